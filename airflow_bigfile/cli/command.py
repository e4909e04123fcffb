"""The ``bigfile`` command: a thin front end that turns arguments into engine calls.

Exit status: 0 on success, 1 on an operational error (one ``bigfile: error: ...`` line on
stderr, no traceback), 2 on a usage error, 130 on SIGINT (Ctrl-C) and 143 on SIGTERM: the
job is cancelled and the target left as it was. A signal that arrives after the commit point
(the rename of a rewrite, the removal of an in-place journal) is too late to cancel: the run
finishes, warns that the edit was committed and exits 0.

Only the standard library is imported at module level, so ``bigfile --help`` stays quick;
the engine (fsspec, pyarrow) is imported when a command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_bigfile.edits import Edit

PROG = "bigfile"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class InputError(Exception):
    """Bad input found after parsing (unreadable --data-file, bad hex, bad JSON): exit 1."""


# ---------------------------------------------------------------------------- parsing


def _non_negative_int(text: str) -> int:
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1, got 0")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _size(text: str) -> int:
    from airflow_bigfile.sizes import parse_size

    try:
        value = parse_size(text, name="--shard-size")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


def _storage_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; VALUE is read as JSON when it parses (``true``, ``5``, ``{...}``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def _delimiter(text: str) -> bytes:
    """Text with backslash escapes (``'\\n'``, ``'\\x00'``) as bytes."""
    import codecs

    try:
        value = codecs.escape_decode(text.encode("utf-8"))[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad escape in {text!r}: {exc}") from None
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _common_options(*, edit: bool) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("common options")
    if edit:
        group.add_argument("--shard-size", type=_size, metavar="SIZE",
                           help="bytes per shard, e.g. 64MiB (default: chosen by the engine)")
        group.add_argument("--workers", type=_positive_int, metavar="N",
                           help="parallel workers (default: chosen by the engine)")
        group.add_argument("--mode", choices=("auto", "inplace", "rewrite"), default="auto",
                           help="commit mode (default: auto)")
        group.add_argument("--staging", metavar="URL",
                           help="where shards are staged (default: beside the target)")
        group.add_argument("--break-hardlinks", action="store_true",
                           help="allow a rewrite of a file with other hard links (they keep "
                                "the old bytes); without it such a file is edited in place "
                                "or the edit is refused")
    group.add_argument("--storage-option", type=_storage_option, action="append", default=[],
                       metavar="KEY=VALUE", dest="storage_options",
                       help="fsspec storage option, repeatable; VALUE is JSON if it parses "
                            "(true, 5, {...}), else text")
    if edit:
        group.add_argument("--dry-run", action="store_true",
                           help="compute the figures, change nothing")
    group.add_argument("--json", action="store_true",
                       help="print the result as one JSON object on stdout")
    group.add_argument("--no-progress", action="store_true",
                       help="no progress bar (it is drawn only when stderr is a terminal)")
    more = parent.add_argument_group("more options")
    more.add_argument("--wait", type=_seconds, metavar="SECONDS",
                      help="wait up to SECONDS for another job's lock (default: 0)")
    if edit:
        more.add_argument("--executor", choices=("thread", "process", "dask"),
                          help="how workers run (default: thread)")
        more.add_argument("--scheduler", metavar="ADDRESS",
                          help="Dask scheduler address (implies --executor dask)")
        more.add_argument("--delimiter", type=_delimiter, metavar="TEXT",
                          help=r"align shards to records ending in TEXT (escapes such as \n)")
    return parent


def _data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (one required)").add_mutually_exclusive_group(
        required=True)
    group.add_argument("--data", metavar="TEXT", help="the bytes, as UTF-8 text")
    group.add_argument("--hex", metavar="HEX", help="the bytes, in hex (spaces allowed)")
    group.add_argument("--data-file", metavar="PATH", help="the bytes, read from a local file")


def build_parser() -> argparse.ArgumentParser:
    """The ``bigfile`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Change huge files (local or any fsspec URL) in place, in parallel, "
                    "committed atomically. Every offset refers to the original file.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options(edit=True)

    def add(name: str, help_: str, parents: list[argparse.ArgumentParser]
            ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, parents=parents)
        p.add_argument("url", metavar="URL", help="a local path or any fsspec URL")
        return p

    p = add("replace", "replace every match of a text or regex", [common])
    p.add_argument("--find", required=True, metavar="TEXT", help="text (or regex) to find")
    p.add_argument("--replace", required=True, metavar="TEXT",
                   help=r"replacement (with --regex: \1 and \g<name> templates)")
    p.add_argument("--regex", action="store_true", help="FIND is a Python regular expression")
    p.add_argument("--max-match", type=_positive_int, metavar="N",
                   help="longest regex match allowed, in bytes (default: 4096)")

    p = add("patch", "overwrite bytes at an offset", [common])
    p.add_argument("--offset", required=True, type=_non_negative_int, metavar="N")
    _data_options(p)

    p = add("insert", "insert bytes before an offset", [common])
    p.add_argument("--offset", required=True, type=_non_negative_int, metavar="N")
    _data_options(p)

    p = add("delete", "remove a range of bytes", [common])
    p.add_argument("--offset", required=True, type=_non_negative_int, metavar="N")
    p.add_argument("--length", required=True, type=_positive_int, metavar="N")

    p = add("truncate", "cut (or zero-extend) the file to a size", [common])
    p.add_argument("--size", required=True, type=_non_negative_int, metavar="N")

    p = add("append", "add bytes after the end", [common])
    _data_options(p)

    p = add("apply", "apply a JSON edit list as one atomic change", [common])
    p.add_argument("--edits", required=True, metavar="EDITS.json",
                   help="a JSON list of edits ('-' reads stdin)")

    add("recover", "roll back an interrupted commit and remove stale staging",
        [_common_options(edit=False)])
    return parser


# ---------------------------------------------------------------------------- running


def _arg_bytes(text: str) -> bytes:
    """A command-line argument's bytes: UTF-8, and undecodable bytes given back as they were."""
    return os.fsencode(text)


def _data(args: argparse.Namespace) -> Any:
    """The edit data: bytes from --data/--hex, or a :class:`DataFile` read in chunks
    (a pipe such as /dev/stdin is first spooled to a temporary file)."""
    if args.data is not None:
        return _arg_bytes(args.data)
    if args.hex is not None:
        try:
            return bytes.fromhex(args.hex)
        except ValueError as exc:
            raise InputError(f"--hex is not valid hex: {exc}") from None
    from airflow_bigfile.exceptions import PayloadError
    from airflow_bigfile.payload import DataFile

    try:
        if stat.S_ISFIFO(os.stat(args.data_file).st_mode):
            return DataFile(_spool(args.data_file))
        return DataFile(args.data_file)
    except OSError as exc:
        raise InputError(f"cannot read --data-file {args.data_file}: "
                         f"{exc.strerror or exc}") from None
    except PayloadError as exc:
        raise InputError(f"--data-file: {exc}") from None


def _spool(path: str) -> str:
    """Copy a pipe to a temporary file (removed at exit), a chunk at a time."""
    import atexit
    import shutil
    import tempfile

    fd, spooled = tempfile.mkstemp(prefix="bigfile-data-")
    atexit.register(os.unlink, spooled)
    with open(path, "rb") as src, os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(src, out, 4 << 20)
    return spooled


def _read_edits(path: str) -> list[Edit]:
    from airflow_bigfile.edits import edits_from_json

    try:
        if path == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                text = f.read()
    except OSError as exc:
        raise InputError(f"cannot read --edits {path}: {exc.strerror or exc}") from None
    try:
        return edits_from_json(text)
    except ValueError as exc:
        raise InputError(f"{'stdin' if path == '-' else path}: {exc}") from None


def _edits(args: argparse.Namespace) -> list[Edit]:
    from airflow_bigfile.edits import Append, Delete, Insert, Patch, Replace, Truncate

    cmd = args.command
    if cmd == "replace":
        extra = {} if args.max_match is None else {"max_match": args.max_match}
        return [Replace(_arg_bytes(args.find), _arg_bytes(args.replace),
                        regex=args.regex, **extra)]
    if cmd == "patch":
        return [Patch(args.offset, _data(args))]
    if cmd == "insert":
        return [Insert(args.offset, _data(args))]
    if cmd == "delete":
        return [Delete(args.offset, args.length)]
    if cmd == "truncate":
        return [Truncate(args.size)]
    if cmd == "append":
        return [Append(_data(args))]
    return _read_edits(args.edits)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def summarize(command: str, args: argparse.Namespace, result: dict[str, Any],
              edits: Sequence[Edit]) -> str:
    """One human line describing an edit's result."""
    from airflow_bigfile.cli.progress import format_bytes

    dry = bool(result.get("dry_run"))
    matches = int(result.get("matches") or 0)
    if command == "replace":
        what = ("would replace " if dry else "replaced ") + _plural(matches, "match", "matches")
    elif command == "apply":
        what = ("would apply " if dry else "applied ") + _plural(len(edits), "edit")
        if matches:
            what += f" ({_plural(matches, 'match', 'matches')})"
    else:
        verb = {"patch": "patch", "insert": "insert", "delete": "delete",
                "truncate": "truncate", "append": "append"}[command]
        done = {"patch": "patched", "insert": "inserted", "delete": "deleted",
                "truncate": "truncated", "append": "appended"}[command]
        edit = edits[0]
        if command == "delete":
            amount = _plural(args.length, "byte")
        elif command == "truncate":
            amount = f"to {_plural(args.size, 'byte')}"
        else:
            amount = _plural(len(edit.data), "byte")  # type: ignore[union-attr]
        where = f" at offset {args.offset}" if command in ("patch", "insert", "delete") else ""
        what = f"{'would ' + verb if dry else done} {amount}{where}"
    parts = [what]
    shards, changed = result.get("shards"), result.get("shards_changed")
    if shards is not None and changed:
        parts[0] += f" in {changed} of {_plural(int(shards), 'shard')}"
    if result.get("size_before") is not None and result.get("size_after") is not None:
        parts.append(f"{format_bytes(result['size_before'])} -> "
                     f"{format_bytes(result['size_after'])}")
    if result.get("bytes_written") is not None:
        parts.append(f"{format_bytes(result['bytes_written'])} "
                     f"{'to write' if dry else 'written'}")
    if result.get("commit_mode"):
        parts.append(f"commit: {result['commit_mode']}")
    line = "; ".join(parts)
    return f"dry run: {line}; nothing changed" if dry else line


def _engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"mode": args.mode, "dry_run": args.dry_run}
    if args.break_hardlinks:
        kwargs["break_hardlinks"] = True
    for name in ("shard_size", "workers", "staging", "delimiter", "wait", "executor"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    if args.scheduler is not None:
        kwargs["executor"] = "dask"
        kwargs["scheduler"] = args.scheduler
    return kwargs


def _want_progress(args: argparse.Namespace) -> bool:
    try:
        return not args.no_progress and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; errors propagate to :func:`main`."""
    storage_options = dict(args.storage_options) or None
    if args.command == "recover":
        from airflow_bigfile import recover_target

        extra = {} if args.wait is None else {"wait": args.wait}
        recovery = recover_target(args.url, storage_options=storage_options, **extra)
        print(json.dumps(recovery.to_dict(), default=str) if args.json else recovery.message)
        return EXIT_OK

    edits = _edits(args)
    from airflow_bigfile import edit_file

    kwargs = _engine_kwargs(args)
    bar = None
    if _want_progress(args):
        from airflow_bigfile.cli.progress import ProgressBar

        bar = ProgressBar(sys.stderr, label=args.command)
        kwargs["progress"] = bar
    try:
        result = edit_file(args.url, edits, storage_options=storage_options, **kwargs)
    finally:
        if bar is not None:
            bar.close()
    figures = result.to_dict()
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        print(summarize(args.command, args, figures, edits))
    return EXIT_OK


def _describe(exc: BaseException) -> str:
    """``exc`` as one line; built-in OSErrors without a strerror get their kind named."""
    text = " ".join(str(exc).split())
    from airflow_bigfile.exceptions import BigFileError

    if isinstance(exc, OSError) and not isinstance(exc, BigFileError) and not exc.strerror:
        kind = {FileNotFoundError: "no such file", IsADirectoryError: "is a directory",
                PermissionError: "permission denied",
                NotADirectoryError: "not a directory"}.get(type(exc), type(exc).__name__)
        return f"{kind}: {text}" if text else kind
    return text or type(exc).__name__


def _fail(message: str, status: int = EXIT_ERROR) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return status


class _WarningHandler(logging.Handler):
    """The engine's warnings (e.g. a rolled-back journal) as ``bigfile: warning: ...``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = " ".join(record.getMessage().split())
            sys.stderr.write(f"{PROG}: warning: {message}\n")
        except Exception:
            self.handleError(record)


def _show_engine_warnings() -> None:
    logger = logging.getLogger("airflow_bigfile")
    if not any(isinstance(h, _WarningHandler) for h in logger.handlers):
        logger.addHandler(_WarningHandler(logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bigfile`` console script; returns the exit status."""
    _show_engine_warnings()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if (args.command != "recover" and args.scheduler is not None
            and args.executor not in (None, "dask")):
        parser.print_usage(sys.stderr)
        return _fail(f"--scheduler needs --executor dask, not {args.executor}", EXIT_USAGE)
    from airflow_bigfile.cancel import Cancelled, cancel_on_signals, late_signal, signal_name

    try:
        with cancel_on_signals():
            status = run(args)
            late = late_signal()
        if late is not None:
            sys.stderr.write(f"{PROG}: warning: {signal_name(late)} arrived after the edit was "
                             "committed; it was not cancelled\n")
        return status
    except KeyboardInterrupt as exc:  # Cancelled, or a Ctrl-C before the handlers were in
        signum = exc.signum if isinstance(exc, Cancelled) else signal.SIGINT
        done = ("run `bigfile recover` again to finish" if args.command == "recover"
                else "nothing was changed")
        return _fail(f"interrupted ({signal_name(signum or signal.SIGINT)}); {done}",
                     128 + (signum or signal.SIGINT))
    except (InputError, OSError, ValueError) as exc:  # BigFileError leaves are among these
        return _fail(_describe(exc))
    except Exception as exc:
        from airflow_bigfile.exceptions import BigFileError

        if isinstance(exc, BigFileError):
            return _fail(_describe(exc))
        if os.environ.get("BIGFILE_DEBUG"):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {_describe(exc)} "
                     "(set BIGFILE_DEBUG=1 for a traceback)")

