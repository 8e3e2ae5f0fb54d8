"""Helpers for end-to-end tests that drive a REAL ``nnictl`` experiment.

Every experiment is private to the test: its config lives in a temporary folder, its experiment folder is
``experimentWorkingDirectory`` under that folder, and ``nnictl`` runs with ``HOME`` (where NNI keeps its
``~/nni-experiments/.experiment`` manifest) and ``NNI_CONFIG_DIR`` (registered algorithms) pointing inside it
too, so nothing outside the temporary folder is touched. The manager is always stopped, even when the test
fails, and failures carry the dispatcher's and the manager's logs.

Typical use::

    config = experiment_config(tmp_path, tuner={...}, trial_code_directory=..., max_trial_number=4)
    with NnictlExperiment.create(config, tmp_path) as exp:
        status = exp.wait_for_status({"DONE", "ERROR"}, timeout=120)
        assert status == "DONE", exp.diagnostics()
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from nni_nas_ext.results import decode_metric  # noqa: F401 - re-exported for the tests

VENV_BIN = Path(sys.executable).parent
PYTHON = str(Path(sys.executable).absolute())
NNICTL = str(VENV_BIN / "nnictl")

#: the command that runs an ``nni.nas`` model in a trial (absolute interpreter: a trial's ``python3`` is
#: whatever comes first on PATH)
NAS_TRIAL_COMMAND = f"{PYTHON} -m nni.nas.execution.training_service trial"
#: our trial command: signed plain-JSON parameters only (what every search of ours sends)
LEAN_TRIAL_COMMAND = f"{PYTHON} -m nni_nas_ext.nni.trial_entry"

TERMINAL_STATUSES = frozenset({"DONE", "ERROR", "STOPPED"})


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (NNI also uses port+1 for nothing; one port is enough)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def private_env(root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for ``nnictl`` that keeps NNI's global files under ``root``."""
    home = root / "home"
    config_dir = root / "nni-config"
    home.mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "HOME": str(home),
        "NNI_CONFIG_DIR": str(config_dir),
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        # the tests run many processes on few cores; one thread each keeps torch from thrashing
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    })
    if extra:
        env.update(extra)
    return env


def experiment_config(root: Path, *, tuner: Mapping[str, Any], trial_code_directory: Path | str,
                      trial_command: str = LEAN_TRIAL_COMMAND, trial_concurrency: int = 1,
                      max_trial_number: int | None = None, name: str = "e2e",
                      **extra: Any) -> dict[str, Any]:
    """An NNI v2 experiment config (as a dict) for the local training service, private to ``root``."""
    config: dict[str, Any] = {
        "experimentName": name,
        "searchSpace": {},
        "trialCommand": trial_command,
        "trialCodeDirectory": str(trial_code_directory),
        "trialConcurrency": trial_concurrency,
        "tuner": dict(tuner),
        "trainingService": {"platform": "local"},
        "experimentWorkingDirectory": str(root / "nni-experiments"),
    }
    if max_trial_number is not None:
        config["maxTrialNumber"] = max_trial_number
    config.update(extra)
    return config


def write_config(root: Path, config: Mapping[str, Any], name: str = "config.yml") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    return path


def run_nnictl(args: Iterable[str], env: Mapping[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``nnictl ARGS``, non-interactive (stdin closed), output captured."""
    return subprocess.run([NNICTL, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=dict(env), timeout=timeout)


class NnictlError(AssertionError):
    """An nnictl command or experiment did not do what the test needed; the message carries the logs."""


class NnictlExperiment:
    """One experiment started with ``nnictl create`` and its REST API.

    Use :meth:`create` as a context manager: the experiment is stopped on exit, whatever happened.
    """

    def __init__(self, root: Path, config_path: Path, port: int, env: dict[str, str]) -> None:
        self.root = root
        self.config_path = config_path
        self.port = port
        self.env = env
        self.exp_id: str | None = None
        self.outputs: list[str] = []  # everything nnictl printed, for diagnostics

    # ---- lifecycle --------------------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def create(cls, config: Mapping[str, Any], root: Path, *, port: int | None = None,
               env: Mapping[str, str] | None = None, start_timeout: float = 90):
        """``nnictl create`` the experiment, wait until its REST API answers, yield it, always stop it."""
        root.mkdir(parents=True, exist_ok=True)
        exp = cls(root, write_config(root, config), port or free_port(), private_env(root, env))
        try:
            exp._create(start_timeout)
            yield exp
        finally:
            exp.stop()

    def _create(self, start_timeout: float) -> None:
        proc = run_nnictl(["create", "--config", str(self.config_path), "--port", str(self.port)], self.env,
                          timeout=start_timeout + 60)
        self._note("nnictl create", proc)
        output = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # nnictl colours its output
        match = re.search(r"Experiment ID:\s*(\w+)", output)
        if match:
            self.exp_id = match.group(1)
        if proc.returncode != 0:
            raise NnictlError(f"nnictl create failed (exit {proc.returncode})\n{self.diagnostics()}")
        self._wait_rest(start_timeout)
        if self.exp_id is None:
            self.exp_id = self.rest("experiment")["id"]

    def _wait_rest(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.rest("check-status")
                return
            except (OSError, ValueError):
                time.sleep(0.5)
        raise NnictlError(f"the REST API on port {self.port} did not answer in {timeout} s\n{self.diagnostics()}")

    def stop(self) -> None:
        """``nnictl stop`` (idempotent, never raises)."""
        args = ["stop", self.exp_id] if self.exp_id else ["stop", "--port", str(self.port)]
        try:
            self._note("nnictl stop", run_nnictl(args, self.env, timeout=90))
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.outputs.append(f"$ nnictl stop: {exc!r}")
        # nnictl stop returns before the manager has gone; make sure the port is free for a resume
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self._port_open():
            time.sleep(0.5)

    def resume(self, *, port: int | None = None, start_timeout: float = 90) -> None:
        """``nnictl resume`` this (stopped) experiment, on a new port by default."""
        if self.exp_id is None:
            raise NnictlError("cannot resume: the experiment id is unknown")
        self.port = port or free_port()
        proc = run_nnictl(["resume", self.exp_id, "--port", str(self.port)], self.env, timeout=start_timeout + 60)
        self._note("nnictl resume", proc)
        if proc.returncode != 0:
            raise NnictlError(f"nnictl resume failed (exit {proc.returncode})\n{self.diagnostics()}")
        self._wait_rest(start_timeout)

    def __enter__(self) -> NnictlExperiment:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- REST -------------------------------------------------------------------------------------------

    def rest(self, api: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/nni/{api.lstrip('/')}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read().decode("utf-8"))

    def status(self) -> dict[str, Any]:
        """``check-status``: ``{"status": ..., "errors": [...]}``."""
        return self.rest("check-status")

    def trial_jobs(self) -> list[dict[str, Any]]:
        return self.rest("trial-jobs")

    def metric_data(self) -> list[dict[str, Any]]:
        return self.rest("metric-data")

    def final_metrics(self) -> dict[str, Any]:
        """``{trial_job_id: final metric}``, the metric decoded as the trial reported it."""
        return {m["trialJobId"]: decode_metric(m["data"]) for m in self.metric_data() if m["type"] == "FINAL"}

    def trial_parameters(self) -> dict[str, dict[str, Any]]:
        """``{trial_job_id: packed parameter}`` (``parameter_id``, ``parameters``, ...) as NNI recorded it."""
        result = {}
        for trial in self.trial_jobs():
            for text in trial.get("hyperParameters") or []:
                result[trial["trialJobId"]] = json.loads(text)
        return result

    def wait_for_status(self, statuses: Iterable[str] = TERMINAL_STATUSES, timeout: float = 120,
                        poll: float = 1.0) -> str:
        """Poll ``check-status`` until the status is one of ``statuses``; return it.

        Raises :class:`NnictlError` (with the logs) on timeout.
        """
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            try:
                status = self.status()["status"]
            except (OSError, ValueError):
                status = "UNREACHABLE"
            if status in wanted:
                return status
            time.sleep(poll)
        raise NnictlError(f"status still {status} after {timeout} s (wanted {sorted(wanted)})\n"
                          f"{self.diagnostics()}")

    def wait_until(self, predicate: Callable[[NnictlExperiment], bool], timeout: float = 120,
                   poll: float = 1.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate(self):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(poll)
        raise NnictlError(f"{what} not reached after {timeout} s\n{self.diagnostics()}")

    # ---- files and diagnostics ------------------------------------------------------------------------

    @property
    def exp_dir(self) -> Path:
        return self.root / "nni-experiments" / (self.exp_id or "_unknown_")

    def log(self, name: str) -> str:
        """A file of the experiment's ``log`` folder (``dispatcher.log``, ``nnimanager.log``,
        ``nnictl_stderr.log``, ...), or '' if absent."""
        path = self.exp_dir / "log" / name
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

    def trial_logs(self, limit: int = 4) -> str:
        parts = []
        for path in sorted(self.exp_dir.glob("environments/*/trials/*/trial.log"))[:limit]:
            parts.append(f"--- {path.relative_to(self.exp_dir)} (tail)\n{_tail(path.read_text(errors='replace'))}")
        for path in sorted(self.exp_dir.glob("environments/*/trials/*/trial.stderr"))[:limit]:
            text = path.read_text(errors="replace").strip()
            if text:
                parts.append(f"--- {path.relative_to(self.exp_dir)} (tail)\n{_tail(text)}")
        return "\n".join(parts)

    def diagnostics(self) -> str:
        """Everything useful to understand a failure: nnictl output, status, trials, logs."""
        parts = [f"experiment {self.exp_id} on port {self.port}, folder {self.exp_dir}"]
        parts.extend(self.outputs[-6:])
        try:
            parts.append(f"check-status: {self.status()}")
            parts.append("trials: " + ", ".join(f"{t['trialJobId']}={t['status']}" for t in self.trial_jobs()))
        except (OSError, ValueError) as exc:
            parts.append(f"REST unavailable: {exc!r}")
        for name in ("dispatcher.log", "nnictl_stderr.log", "nnimanager.log"):
            parts.append(f"--- {name} (tail)\n{_tail(self.log(name))}")
        parts.append(self.trial_logs())
        return "\n".join(parts)

    def _note(self, what: str, proc: subprocess.CompletedProcess[str]) -> None:
        text = re.sub(r"\x1b\[[0-9;]*m", "", f"{proc.stdout.strip()}\n{proc.stderr.strip()}")
        self.outputs.append(f"$ {what} (exit {proc.returncode})\n{text}")

    def _port_open(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def candidates_in(value: Any) -> Iterator[dict[str, Any]]:
    """Every candidate dict (id, architecture, role...) inside a trial's parameters as NNI recorded them."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            value = json.loads(value)
        except ValueError:
            return
    if isinstance(value, dict):
        if {"id", "architecture", "role", "parent"} <= set(value):
            yield value
        for item in value.values():
            yield from candidates_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from candidates_in(item)
