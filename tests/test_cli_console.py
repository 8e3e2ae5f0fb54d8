"""The command line as a user meets it: help on every option, a pipe closed early, plain text for scripts,
and no `pkg_resources` warning from the nnictl calls (the export's list of files: tests/test_trial.py)."""

from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nni_nas_ext.cli import build_parser
from nni_nas_ext.console import ANSI, colour, nnictl_env, plain

ROOT = Path(__file__).resolve().parent.parent


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_option_has_help_and_an_example() -> None:
    parser = build_parser()
    assert "examples:" in parser.format_help() and "python -m nni_nas_ext run --config" in parser.format_help()
    commands = _subparsers(parser)
    assert set(commands) == {"setup", "run", "follow", "summary", "export", "searches", "report"}
    for name, sub in commands.items():
        assert sub.description, name
        assert f"python -m nni_nas_ext {name}" in sub.format_help(), name  # its example
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 15, (name, action.option_strings)


class _MetricData(http.server.BaseHTTPRequestHandler):
    """NNI's REST API, as far as `summary` reads it: 2,000 tested trials (far more than a pipe buffers)."""

    body = json.dumps([{"trialJobId": f"t{i}", "type": "FINAL", "data": json.dumps(json.dumps(
        {"default": 0.5, "candidate": f"job-{i:04d}", "role": "final", "kind": "param", "params": i,
         "test_acc": 0.5}))} for i in range(2000)]).encode()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_pipe_closed_early_ends_quietly() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetricData)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cmd = (f"set -o pipefail; '{sys.executable}' -m nni_nas_ext summary --port {server.server_address[1]} "
               f"--json | head -c 400")
        proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        server.shutdown()
    assert len(proc.stdout) == 400 and proc.stdout.startswith("\n== results")
    assert proc.stderr == "" and proc.returncode == 0, proc.stderr


def test_colour_codes_reach_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    class File:
        def isatty(self) -> bool:
            return False

    red = "\x1b[31mINFO:\x1b[0m Successfully started experiment!"
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert plain(red, Tty()) == red and colour(Tty())
    assert plain(red, File()) == "INFO: Successfully started experiment!" and not ANSI.search(plain(red, File()))
    monkeypatch.setenv("NO_COLOR", "1")
    assert plain(red, Tty()) == "INFO: Successfully started experiment!"


@pytest.mark.slow
def test_nnictl_runs_without_the_pkg_resources_warning() -> None:
    env = nnictl_env({**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"})
    assert env["PYTHONWARNINGS"] == (
        "error::ResourceWarning,ignore:pkg_resources is deprecated,"
        "ignore:<class 'torch.nn.parameter.Buffer'> is found to be not a nn.Module:RuntimeWarning,"
        "ignore:<class 'torch.nn.modules.linear_cross_entropy_options.LinearCrossEntropyOptions'> is found to be "
        "not a nn.Module:RuntimeWarning")
    assert nnictl_env(env)["PYTHONWARNINGS"] == env["PYTHONWARNINGS"]  # idempotent
    nnictl = Path(sys.executable).parent / "nnictl"
    bare = subprocess.run([str(nnictl), "--version"], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"})
    ours = subprocess.run([str(nnictl), "--version"], capture_output=True, text=True, timeout=120, env=nnictl_env())
    assert ours.returncode == 0 and "3.0" in ours.stdout
    assert "pkg_resources" not in ours.stderr
    if "pkg_resources" not in bare.stderr:
        pytest.skip("this setuptools prints no pkg_resources warning: nothing to silence")


@pytest.mark.slow
def test_importing_nni_nas_through_us_or_under_nnictl_s_environment_hides_only_the_two_torch_aliases() -> None:
    # NNI warns for each torch.nn class that is not a module; on the locked torch two are (harmless) aliases
    probe = ("import warnings, nni.nas.nn.pytorch\n"
             "warnings.warn(\"<class 'torch.nn.Other'> is found to be not a nn.Module\", RuntimeWarning)")
    bare_env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    bare = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=bare_env)
    under_nnictl = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                                  env=nnictl_env(bare_env))
    through_us = subprocess.run([sys.executable, "-c", "import nni_nas_ext.nni\n" + probe], capture_output=True,
                                text=True, timeout=120, env=bare_env)
    for run in (bare, under_nnictl, through_us):
        assert run.returncode == 0, run.stderr
        assert "torch.nn.Other" in run.stderr  # any other class NNI does not expect still warns
    if "Buffer'> is found" not in bare.stderr:
        pytest.skip("this torch gives NNI no alias to warn about: nothing to hide")
    for run in (under_nnictl, through_us):
        assert "Buffer'> is found" not in run.stderr and "LinearCrossEntropyOptions'> is found" not in run.stderr
