"""NASH across two real SSH hosts on NNI's remote training service, through ``nnictl create`` (issue 17).

Two OpenSSH servers (Debian's ``/usr/sbin/sshd``; ``make sshd`` installs it) listen on 127.0.0.2 and 127.0.0.3, each
with its own host key, its own working folder as the login's ``HOME`` (NNI keeps its trials under
``~/nni-experiments`` there) and key authentication with a key the test generates. NNI's manager runs with its own
private HOME and experiment folder, which neither host's trials are told of; what the hosts share is what a real
cluster would share: the checkpoint store and the experiment's key file (``shared/``), and the Python environment
(this venv, as each host's ``pythonPath``). Each sshd runs in a mount namespace of its own (``unshare``) in which
pytest's temporary folder is an empty tmpfs except for that host's folder and the shared one: a host's trials cannot
see the other host's folder nor the manager's experiment folder (checked over SSH). Where mount namespaces are not
allowed (no CAP_SYS_ADMIN, e.g. an unprivileged container), the hosts run without them and the test says so.
Asserted through the REST API and the hosts' folders: every trial succeeded; trials ran on both hosts; a child
trained on the other host than its parent started from its parent's accuracy (exact morphisms); ``nnictl stop`` and
``resume`` in the middle continue the search without training a network twice; nothing was written to the hosts' own
folders but NNI's trial folders.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import E2E_CLASS_ARGS
from nnictl_harness import VENV_BIN, NnictlExperiment, experiment_config
from nni_nas_ext.results import SearchResults, decode_metric

pytestmark = [pytest.mark.e2e, pytest.mark.remote]

ROOT = Path(__file__).resolve().parents[1]
SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
SSH = shutil.which("ssh") or "/usr/bin/ssh"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
ADDRESSES = ("127.0.0.2", "127.0.0.3")
#: nniManagerIp: not the manager's own address (127.0.0.1), so that the workers reach it through the ``workers``
#: proxy of nni_patch, which serves their channels there and nothing else
MANAGER_IP = "127.0.0.4"
N_TRIALS = 1 + 2 * 3 + 2  # conftest.E2E_CLASS_ARGS
N_VAL = 1797 - 359 - 1294  # digits: the validation split (trial_code.datasets)


@dataclass(frozen=True)
class Host:
    address: str
    port: int
    folder: Path

    @property
    def home(self) -> Path:
        return self.folder / "home"


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _wait_open(address: str, port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((address, port)) == 0:
                return True
        time.sleep(0.2)
    return False


def _sshd_config(host: Host, client_public_key: str) -> Path:
    (host.folder / "authorized_keys").write_text(client_public_key)
    (host.folder / "authorized_keys").chmod(0o600)
    config = host.folder / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress {host.address}",
        f"Port {host.port}",
        f"HostKey {host.folder / 'ssh_host_ed25519_key'}",
        f"PidFile {host.folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {host.folder / 'authorized_keys'}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM yes",
        "StrictModes no",  # pytest's tmp lies under the world-writable /tmp
        "Subsystem sftp internal-sftp",
        # each host its own HOME (NNI's ~/nni-experiments); no package index (NNI's worker runs pip install nni)
        f"SetEnv HOME={host.home} PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
        "LogLevel VERBOSE",
    ]) + "\n")
    return config


@dataclass(frozen=True)
class Hosts:
    hosts: list[Host]
    client_key: Path
    shared: Path  #: what every host mounts: the checkpoint store and the experiment's key
    isolated: bool  #: each host in a mount namespace of its own


def _namespaces_allowed() -> str | None:
    """None where this process may make mount namespaces; otherwise why not."""
    probe = subprocess.run([UNSHARE, "--mount", "--propagation", "private", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else (probe.stderr.strip() or f"exit status {probe.returncode}")


def _isolated(command: list[str], hidden: Path, visible: list[Path], stage: Path) -> list[str]:
    """``command`` in a mount namespace of its own in which ``hidden`` is an empty tmpfs but for ``visible`` (folders
    under it, bind-mounted back at their own paths through ``stage``, a folder outside ``hidden``)."""
    q = shlex.quote
    script = ["set -e"]
    for i, path in enumerate(visible):
        script += [f"mkdir -p {q(str(stage / str(i)))}", f"mount --bind {q(str(path))} {q(str(stage / str(i)))}"]
    script.append(f"mount -t tmpfs -o mode=0755 nnx-hidden {q(str(hidden))}")
    for i, path in enumerate(visible):
        script += [f"mkdir -p {q(str(path))}", f"mount --move {q(str(stage / str(i)))} {q(str(path))}"]
    script.append('exec "$@"')
    return [UNSHARE, "--mount", "--propagation", "private", "sh", "-c", "\n".join(script), "sh", *command]


def _ssh(host: Host, key: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SSH, "-i", str(key), "-p", str(host.port), "-o", "BatchMode=yes", "-o",
                           "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                           f"root@{host.address}", command], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def ssh_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    """Two sshd servers on 127.0.0.2 and 127.0.0.3, each in its own mount namespace where allowed."""
    if os.geteuid() != 0:
        pytest.fail("the remote test starts sshd servers and logs in as root: run the suite as root (CI does)")
    if not SSHD.is_file():
        pytest.fail(f"{SSHD} is missing: run `make sshd` (as root) or `apt-get install openssh-server`")
    why_not = _namespaces_allowed()
    if why_not:
        warnings.warn(f"mount namespaces are not allowed here ({why_not}): the two SSH hosts share this machine's "
                      "view of the files (separate working folders only)", stacklevel=1)
    root = tmp_path_factory.mktemp("ssh")
    hidden = tmp_path_factory.getbasetemp()  # every test's folders, the manager's experiment folder among them
    stage = Path(tempfile.mkdtemp(prefix="nnx-remote-ns-"))  # outside `hidden`
    client = root / "client"
    client.mkdir()
    shared = root / "shared"
    (shared / "keys").mkdir(parents=True)
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(client / "id_ed25519")], check=True)
    public = (client / "id_ed25519.pub").read_text()
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder (Debian)
    hosts, procs = [], []
    try:
        for i, address in enumerate(ADDRESSES, 1):
            host = Host(address, _free_port(address), root / f"host{i}")
            host.home.mkdir(parents=True)
            subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f",
                            str(host.folder / "ssh_host_ed25519_key")], check=True)
            config = _sshd_config(host, public)
            check = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True)
            assert check.returncode == 0, f"sshd -t {config}: {check.stderr}"
            command = [str(SSHD), "-D", "-e", "-f", str(config)]
            if not why_not:
                command = _isolated(command, hidden, [host.folder, shared], stage / f"host{i}")
            log = (host.folder / "sshd.log").open("w")
            procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
            assert _wait_open(address, host.port), (host.folder / "sshd.log").read_text()
            hosts.append(host)
        yield Hosts(hosts, client / "id_ed25519", shared, isolated=not why_not)
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(stage, ignore_errors=True)


def _finished(exp: NnictlExperiment, *, trained_only: bool = False) -> list[str]:
    """Candidates of the final results (``trained_only``: not the re-reports of trials NNI re-ran on resume)."""
    finals = [decode_metric(m["data"]) for m in exp.metric_data() if m["type"] == "FINAL"]
    return [f.get("candidate") for f in finals if not (trained_only and f.get("rerun"))]


def _host_of(trial: dict) -> str | None:
    """The host NNI ran a trial on: its logPath is ``<host>:<folder>`` on the remote service."""
    log_path = str(trial.get("logPath") or "")
    return next((a for a in ADDRESSES if log_path.startswith(f"{a}:") or f"//{a}" in log_path), None)


def test_nash_across_two_ssh_hosts_inherits_weights_across_hosts(ssh_hosts: Hosts, tmp_path: Path) -> None:
    hosts, client_key, shared = ssh_hosts.hosts, ssh_hosts.client_key, ssh_hosts.shared
    code = tmp_path / "trial_code"
    code.mkdir()
    (code / "README").write_text("the trials import nni-nas-ext from pythonPath's environment\n")
    command = (f"NNI_NAS_EXT_TRIAL_KEY_FILE={shared}/keys/${{NNI_EXP_ID}}.key "
               f"{VENV_BIN}/python -m nni_nas_ext.nni.trial_entry")
    config = experiment_config(
        tmp_path, name="remote-e2e", trial_code_directory=code, trial_command=command, trial_concurrency=2,
        max_trial_number=30, maxExperimentDuration="15m", nniManagerIp=MANAGER_IP,
        tuner={"className": "nni_nas_ext.nni.tuners.NashTuner", "codeDirectory": str(ROOT),
               "classArgs": {**E2E_CLASS_ARGS, "checkpoint_dir": str(shared / "checkpoints")}},
        trainingService={"platform": "remote", "machineList": [
            {"host": h.address, "port": h.port, "user": "root", "sshKeyFile": str(client_key),
             "pythonPath": str(VENV_BIN)} for h in hosts]})
    with NnictlExperiment.create(config, tmp_path) as exp:
        # `nnictl stop` and `resume` in the middle (the seed and at least two more done): the search goes on
        exp.wait_until(lambda e: len(_finished(e)) >= 3, timeout=600, what="3 finished trials")
        # the workers reached the manager on nniManagerIp, where the portal and the REST API are refused
        for path in ("/api/v1/nni/check-status", "/"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://{MANAGER_IP}:{exp.port}{path}", timeout=10)
            assert refused.value.code == 403, path
        assert exp.rest("check-status")["status"] in ("RUNNING", "DONE")  # still served on loopback
        exp.stop()
        resumed_at = time.time()
        exp.resume()
        status = exp.wait_for_status({"DONE", "ERROR", "STOPPED"}, timeout=900)
        diag = exp.diagnostics
        assert status == "DONE", diag()
        trained = _finished(exp, trained_only=True)
        reported = set(_finished(exp))
        # every candidate reached the search, and none was trained twice
        assert len(reported) == N_TRIALS and len(trained) == len(set(trained)), (sorted(trained), diag())
        # A candidate may be known only by a re-report: its trial finished training (checkpoint written) while
        # `nnictl stop` ran, before NNI recorded its result; NNI re-ran it after the resume and it reported the
        # stored result. It was trained once, in the first session: its checkpoint is older than the resume.
        for candidate in reported - set(trained):
            written = (shared / "checkpoints" / f"{candidate}.pt").stat().st_mtime
            assert written < resumed_at, (candidate, written, resumed_at, diag())
        trials = exp.trial_jobs()
        succeeded = [t for t in trials if t["status"] == "SUCCEEDED"]
        assert {t["status"] for t in trials} <= {"SUCCEEDED", "USER_CANCELED", "SYS_CANCELED"}, diag()
        host_of = {t["trialJobId"]: _host_of(t) for t in succeeded}
        assert set(host_of.values()) == set(ADDRESSES), (host_of, [t.get("logPath") for t in trials])

        results = SearchResults.from_metric_data(exp.metric_data())
        assert not results.failures
        by_candidate = results.results
        crossed = []
        for child in (r for r in by_candidate.values() if r["role"] == "child"):
            parent = by_candidate[child["parent"]]
            assert child["preservation_error"] < 1e-5, child
            assert abs(child["start_val_acc"] - parent["default"]) <= 1 / N_VAL + 1e-12, (child, parent)
            if host_of[child["trial"]] != host_of[parent["trial"]]:
                crossed.append(child["candidate"])
        assert crossed, ("no child was trained on another host than its parent", host_of)

        # the checkpoints and the key are on the shared storage, not in the hosts' own folders
        key = shared / "keys" / f"{exp.exp_id}.key"
        assert key.is_file() and key.stat().st_mode & 0o077 == 0
        assert {p.stem for p in (shared / "checkpoints").glob("*.pt")} >= set(by_candidate)
        for host in hosts:
            assert not list(host.home.rglob("*.pt")), host
            assert not list(host.home.rglob("trial-key")), host

        if ssh_hosts.isolated:  # what a host's logins see: its own folder and the shared store, nothing else of ours
            for host, other in zip(hosts, reversed(hosts)):
                seen = _ssh(host, client_key, f"test -d {shlex.quote(str(host.home))} && "
                                              f"test -f {shlex.quote(str(key))} && echo visible")
                assert seen.stdout.strip() == "visible", (host, seen.stderr)
                for path in (exp.root, other.folder):  # the manager's HOME and experiment folder; the other host
                    probe = _ssh(host, client_key, f"test -e {shlex.quote(str(path))} && echo visible || echo hidden")
                    assert probe.stdout.strip() == "hidden", (host, path, probe.stderr)
