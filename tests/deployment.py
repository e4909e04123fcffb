"""An Airflow deployment as users run one: scheduler, DAG processor and API server as separate
processes, on SQLite in a temporary ``AIRFLOW_HOME``, the API server on an ephemeral loopback
port. DAG runs are triggered and followed through the public REST API.

Every component runs in its own session (process group); :meth:`Deployment.stop` ends each
whole group (SIGTERM, then SIGKILL), so the task processes the executor forked end with them.
Used by ``tests/system/test_deployment.py`` and ``scripts/system_test.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COMPONENTS = ("scheduler", "dag-processor", "api-server")
FINISHED = ("success", "failed")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Deployment:
    """A running Airflow of ``components`` with ``executor``; use it as a context manager."""

    def __init__(self, root: Path, dags: Path, *, executor: str = "LocalExecutor",
                 parallelism: int = 4, env: Mapping[str, str] | None = None,
                 components: tuple[str, ...] = COMPONENTS) -> None:
        self.root = root
        self.home = root / "home"
        self.logs = root / "logs"
        for folder in (self.home, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.components = components
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs / "tasks"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get(
                "PYTHONPATH")])),
        })
        self.env.update(env or {})

    # ------------------------------------------------------------ processes

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command against this deployment; fail on a non-zero exit."""
        proc = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, cwd=self.root,
                              start_new_session=True)
        if proc.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} exited {proc.returncode}:\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
        return proc

    def spawn(self, name: str, args: list[str], *, cwd: Path | None = None,
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``args`` as a process of this deployment, in a session of its own, logging
        to ``logs/<name>.log``; :meth:`stop` ends it."""
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = self.procs[name] = subprocess.Popen(
                args, env={**self.env, **(env or {})}, cwd=cwd or self.root, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return proc

    def start(self, timeout: float = 180) -> Deployment:
        """Migrate the database, start every component and wait for the API server."""
        self.airflow("db", "migrate")
        for name in self.components:
            self.spawn(name, [sys.executable, "-m", "airflow", name])
        if "api-server" in self.components:
            self._wait(lambda: self._health(), timeout, "the API server to answer")
        return self

    def stop(self, grace: float = 15) -> None:
        """End every component's whole process group: SIGTERM, then SIGKILL after ``grace``."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            # the group may outlive its leader (forked task processes): kill what is left
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        settled = time.monotonic() + 5  # killed members other than the leaders exit async
        while self.survivors() and time.monotonic() < settled:
            time.sleep(0.05)

    def survivors(self) -> list[int]:
        """Live members of this deployment's process groups (should be none); a zombie has
        ended and only waits for its parent to reap it."""
        groups = {p.pid for p in self.procs.values()}
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError):
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if os.getpgid(int(entry.name)) in groups and state != "Z":
                        found.append(int(entry.name))
        return found

    def __enter__(self) -> Deployment:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 3000) -> str:
        """The end of each component's log, for failure messages."""
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}"
                         for path in sorted(self.logs.glob("*.log")))

    # ------------------------------------------------------------ REST API

    def _wait(self, ready: Any, timeout: float, what: str, every: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"the {name} exited {proc.returncode} while waiting for "
                                       f"{what}\n{self.log_tail()}")
            value = ready()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}\n{self.log_tail()}")
            time.sleep(every)

    def _health(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5):
                return True
        except (OSError, urllib.error.URLError):
            return False

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One call of the public REST API (``/api/v2/...``); returns the decoded JSON."""
        if self._token is None:
            with urllib.request.urlopen(f"{self.url}/auth/token", timeout=30) as resp:
                self._token = json.load(resp)["access_token"]
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/api/v2/{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {self._token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)

    def _get_or_none(self, path: str) -> Any:
        try:
            return self.request("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def wait_for_dags(self, *dag_ids: str, timeout: float = 120) -> None:
        """Wait until the DAG processor has parsed every one of ``dag_ids``."""
        for dag_id in dag_ids:
            self._wait(lambda d=dag_id: self._get_or_none(f"dags/{d}"), timeout,
                       f"the DAG processor to parse {dag_id}")

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a run as a user would (``POST dagRuns``); returns its run id."""
        run = self.request("POST", f"dags/{dag_id}/dagRuns",
                           {"logical_date": None, "conf": dict(conf or {})})
        return str(run["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240) -> dict[str, Any]:
        """Wait until the run has finished; returns the run."""
        def finished() -> Any:
            run = self.request("GET", f"dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in FINISHED else None

        return self._wait(finished, timeout, f"run {run_id} of {dag_id}", every=1.0)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"dags/{dag_id}/dagRuns")["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (mapped ones each with its ``map_index``)."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.request("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances"
                                       f"?limit=100&offset={len(out)}")
            out.extend(page["task_instances"])
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """The ``return_value`` XCom of one task instance, decoded."""
        entry = self.request("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                                    f"/xcomEntries/return_value?map_index={map_index}"
                                    f"&deserialize=true")
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value


def seconds(ti: Mapping[str, Any], start: str = "start_date", end: str = "end_date") -> float:
    """Seconds between two timestamps of a task instance."""
    return (datetime.fromisoformat(ti[end]) - datetime.fromisoformat(ti[start])).total_seconds()


@contextlib.contextmanager
def deployed(root: Path, dags: Path, **kwargs: Any) -> Iterator[Deployment]:
    """A started :class:`Deployment`, stopped (every process group) whatever happens."""
    deployment = Deployment(root, dags, **kwargs)
    with deployment:
        yield deployment
