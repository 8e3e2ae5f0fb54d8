"""A private ``nnictl`` experiment for the comparison harness: create, watch through REST, always stop.

Each experiment keeps NNI's global files inside its own folder: ``HOME`` (where ``nnictl`` keeps its
``~/nni-experiments/.experiment`` manifest), ``NNI_CONFIG_DIR`` (registered algorithms) and the config's
``experimentWorkingDirectory`` all point under ``root``, so running the harness never touches the user's
``~/nni-experiments``. :meth:`PrivateExperiment.stop` is idempotent and is called from a ``finally``
(Ctrl-C included) by :func:`private_experiment`.

Standard library plus PyYAML (a dependency of NNI) only.
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
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from nni_nas_ext.console import ANSI as _ANSI
from nni_nas_ext.console import nnictl_env

__all__ = ["NnictlFailed", "PrivateExperiment", "free_port", "lean_trial_command", "nas_trial_command",
           "private_experiment", "venv_python"]



class NnictlFailed(RuntimeError):
    """``nnictl`` did not start the experiment, or its REST API never answered; the message carries the logs."""


def venv_python() -> str:
    """The absolute path of this interpreter, *not* resolved: a venv's ``bin/python`` is a symlink to the base
    interpreter, and resolving it would leave the venv (a trial's ``python3`` is whatever is first on PATH)."""
    return str(Path(sys.executable).absolute())


def nas_trial_command() -> str:
    """NNI's own command that runs one ``nni.nas`` model in a trial, with this very interpreter."""
    return f"{venv_python()} -m nni.nas.execution.training_service trial"


def lean_trial_command() -> str:
    """Our lean trial command (``nni_nas_ext.nni.trial_entry``), with this very interpreter: the one our configs
    use. It runs our tuners' trials without importing ``nni.nas``, and hands anything else to NNI's entry."""
    return f"{venv_python()} -m nni_nas_ext.nni.trial_entry"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PrivateExperiment:
    """One ``nnictl create`` experiment whose NNI state lives under ``root``.

    Parameters
    ----------
    root
        Folder of everything this experiment writes (config, home, NNI config, experiment folder).
    config
        The NNI v2 experiment config; ``experimentWorkingDirectory`` is set to ``root/nni-experiments``.
    port
        Port of the REST API and the portal; 0 picks a free one.
    threads
        ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` of the manager, the dispatcher and every trial.
    """

    def __init__(self, root: Path, config: Mapping[str, Any], *, port: int = 0, threads: int = 1) -> None:
        self.root = Path(root).absolute()
        self.config = {**dict(config), "experimentWorkingDirectory": str(self.root / "nni-experiments")}
        self.port = port or free_port()
        self.exp_id: str | None = None
        self.log: list[str] = []  # what nnictl printed, for error messages
        self.stop_seconds: float | None = None  # how long the last stop took (nnictl stop, port freed)
        home, nni_config = self.root / "home", self.root / "nni-config"
        for folder in (home, nni_config):
            folder.mkdir(parents=True, exist_ok=True)
        bin_dir = str(Path(venv_python()).parent)
        self.env = nnictl_env({**os.environ, "HOME": str(home), "NNI_CONFIG_DIR": str(nni_config),
                               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                               "OMP_NUM_THREADS": str(max(1, threads)), "MKL_NUM_THREADS": str(max(1, threads))})
        self.config_path = self.root / "config.yml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8")
        self.nnictl = str(Path(bin_dir) / "nnictl")

    # ---- lifecycle -------------------------------------------------------------------------------------

    def _nnictl(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.nnictl, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        self.log.append(f"$ nnictl {' '.join(args)} (exit {proc.returncode})\n"
                        + _ANSI.sub("", f"{proc.stdout.strip()}\n{proc.stderr.strip()}").strip())
        return proc

    def create(self, start_timeout: float = 120) -> None:
        """``nnictl create`` and wait until the REST API answers.

        Raises
        ------
        NnictlFailed
            With nnictl's output and the experiment's logs.
        """
        proc = self._nnictl("create", "--config", str(self.config_path), "--port", str(self.port),
                            timeout=start_timeout + 60)
        match = re.search(r"Experiment ID:\s*(\w+)", _ANSI.sub("", proc.stdout + proc.stderr))
        if match:
            self.exp_id = match.group(1)
        if proc.returncode != 0:
            raise NnictlFailed(f"nnictl create failed (exit {proc.returncode}); config {self.config_path}\n"
                               f"{self.diagnostics()}")
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                self.rest("check-status")
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise NnictlFailed(f"the REST API on port {self.port} did not answer within {start_timeout} s\n"
                                       f"{self.diagnostics()}") from None
                time.sleep(0.5)
        if self.exp_id is None:
            self.exp_id = str(self.rest("experiment")["id"])

    def stop(self) -> None:
        """``nnictl stop`` (kills running trials); idempotent, never raises; waits until the port is free."""
        args = ["stop", self.exp_id] if self.exp_id else ["stop", "--port", str(self.port)]
        start = time.monotonic()
        try:
            self._nnictl(*args, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.log.append(f"$ nnictl stop: {exc!r}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _port_open(self.port):
            time.sleep(0.5)
        self.stop_seconds = round(time.monotonic() - start, 2)

    # ---- REST ------------------------------------------------------------------------------------------

    def rest(self, api: str) -> Any:
        """``GET /api/v1/nni/<api>``, decoded from JSON."""
        url = f"http://127.0.0.1:{self.port}/api/v1/nni/{api.lstrip('/')}"
        with urllib.request.urlopen(url, timeout=15) as response:
            return json.loads(response.read().decode("utf-8"))

    def status(self) -> str:
        """The experiment's status (``RUNNING``, ``NO_MORE_TRIAL``, ``DONE``, ``ERROR``...) or ``UNREACHABLE``."""
        try:
            return str(self.rest("check-status")["status"])
        except (OSError, ValueError, KeyError):
            return "UNREACHABLE"

    # ---- files -----------------------------------------------------------------------------------------

    @property
    def exp_dir(self) -> Path:
        return self.root / "nni-experiments" / (self.exp_id or "_unknown_")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.exp_dir / "log" / name
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def diagnostics(self) -> str:
        """nnictl's output and the tails of the dispatcher's, the manager's and nnictl's logs."""
        parts = [f"experiment {self.exp_id} on port {self.port}, folder {self.exp_dir}", *self.log[-4:]]
        for name in ("dispatcher.log", "nnictl_stderr.log", "nnimanager.log"):
            tail = self.log_tail(name)
            if tail:
                parts.append(f"--- {name} (tail)\n{tail}")
        return "\n".join(parts)


@contextlib.contextmanager
def private_experiment(root: Path, config: Mapping[str, Any], *, port: int = 0,
                       threads: int = 1) -> Iterator[PrivateExperiment]:
    """Create the experiment, yield it, and stop it whatever happens (exceptions and Ctrl-C included)."""
    exp = PrivateExperiment(root, config, port=port, threads=threads)
    try:
        exp.create()
        yield exp
    finally:
        exp.stop()
