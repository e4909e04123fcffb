"""Another user of the same folders: runs commands as ``nobody`` (uid 65534) through
``runuser`` or ``setpriv``, in a folder both users can reach."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


def require_root() -> None:
    """Fail, never skip, where the suite cannot play a second user: the Safety tests run as
    root (as ``make test`` does in CI) and act as uid 65534 beside it."""
    assert os.geteuid() == 0, "this test acts as a second user (uid 65534): run it as root"


def switch_user() -> list[str]:
    """The command prefix that runs a command as uid 65534."""
    require_root()
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    raise AssertionError("neither setpriv nor runuser is installed: cannot act as uid 65534")


def as_nobody(*cmd: str, check: bool = True, **kwargs: object
              ) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as uid 65534."""
    return subprocess.run([*switch_user(), *cmd], capture_output=True, text=True,
                          check=check, timeout=60, **kwargs)  # type: ignore[call-overload]


def nobody_python(code: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as uid 65534 (the system interpreter: the project's may sit
    under a home folder that user cannot enter)."""
    assert os.path.exists(SYSTEM_PYTHON), f"{SYSTEM_PYTHON} is needed to run code as uid 65534"
    return as_nobody(SYSTEM_PYTHON, "-c", code, *args, **kwargs)


def shared_folder() -> Iterator[Path]:
    """A folder under /tmp that both root and nobody may write (mode 0777: the attacker
    can plant files and links next to the victim's)."""
    folder = Path(tempfile.mkdtemp(prefix="bigfile-shared-", dir="/tmp"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def listing(folder: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """Every entry under ``folder`` (links not followed): mode, uid, size and content."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            full = os.path.join(root, name)
            st = os.lstat(full)
            body = b""
            if os.path.islink(full):
                body = os.readlink(full).encode()
            elif os.path.isfile(full):
                body = Path(full).read_bytes()
            out[os.path.relpath(full, folder)] = (st.st_mode, st.st_uid, st.st_size, body)
    return out


def forked_as_nobody(fn: Callable[[], object]) -> object:
    """Run ``fn`` in a forked child whose user is uid/gid 65534 (the engine is already
    imported, so nothing needs to be readable by that user); returns what ``fn`` returned
    (JSON-able), or raises ``RuntimeError`` with the child's error."""
    require_root()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out = {"value": fn()}
        except BaseException as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        raw = f.read()
    os.waitpid(pid, 0)
    out = json.loads(raw)
    if "error" in out:
        raise RuntimeError(out["error"])
    return out["value"]


def cli_as_nobody(*args: object) -> tuple[int, str, str]:
    """``bigfile ARGS`` run as uid 65534 in a forked child: (status, stdout, stderr)."""
    from airflow_bigfile.cli.command import main  # imported here: the child may not read the tree

    def run() -> list[object]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([str(a) for a in args])
        return [status, out.getvalue(), err.getvalue()]

    status, out, err = forked_as_nobody(run)  # type: ignore[misc]
    return status, out, err
