"""What a search on NNI 3.0's remote training service needs, checked before anything runs (issue 17).

``trainingService: {platform: remote, machineList: [...]}`` runs each trial on one of the listed SSH hosts
(NNI's ``remote_v3``: it uploads ``trialCodeDirectory`` to every host, starts a trial keeper there with the
host's ``pythonPath``, and the keeper connects back to NNI's manager at ``nniManagerIp``). Our trials inherit
their parent's weights through the checkpoint store and verify their parameter with the experiment's key, so a
remote search needs what a local one finds in the dispatcher's folders on storage every host reaches.
:func:`remote_problems` lists what is missing or wrong, each message naming the field, the value and the remedy:

1. ``reuseMode: true`` (NNI's legacy trial runner, which gives trials no HTTP channel) is refused;
2. a list of training services (hybrid) with a remote one is refused;
3. ``nniManagerIp`` (top level or in ``trainingService``) must be set: without it NNI tells the hosts to connect
   to ``localhost``, i.e. to themselves;
4. it must be an IPv4 address or a host name (NNI builds ``ws://IP:PORT`` without brackets) and, when checked,
   an address of this machine; a loopback address only when every host is a loopback address too;
5. ``tuner.classArgs.checkpoint_dir`` must be an absolute folder on shared storage (the default, inside the
   experiment's folder, exists only on this machine; NNI 3.0's remote service does not use ``sharedStorage``);
6. the ``trialCommand`` must name the experiment's key file on shared storage
   (``NNI_NAS_EXT_TRIAL_KEY_FILE=/shared/keys/${NNI_EXP_ID}.key python -m nni_nas_ext.nni.trial_entry``), an
   absolute path in which only ``$NNI_EXP_ID`` may vary, and its interpreter must not be a relative path (which
   would exist only inside the uploaded ``trialCodeDirectory``);
7. the files a trial reads by path (``dataset_root``, ``source_root``, ``target_root``, ``seed_checkpoint``,
   ``teacher``) must be absolute paths (``~`` and relative paths differ per host);
8. ``trialCodeDirectory`` must be a non-empty folder NNI can upload (at most 2,000 files and 300 MB).

:func:`remote_warnings` says what NNI 3.0 gets wrong on the GPU path (``trialGpuNumber``).
Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
import shlex
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "KEY_VARIABLE",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_FILES",
    "PATH_SETTINGS",
    "dispatcher_experiment_config",
    "is_remote",
    "key_file_from_trial_command",
    "manager_ip",
    "remote_problems",
    "remote_warnings",
]

#: the variable of the trial command that names the experiment's key file (``nni_nas_ext.wire.KEY_FILE_ENV``)
KEY_VARIABLE = "NNI_NAS_EXT_TRIAL_KEY_FILE"
#: NNI 3.0 refuses to upload a trialCodeDirectory with more files or bytes (remote_v3, its tar of the folder)
MAX_UPLOAD_FILES = 2000
MAX_UPLOAD_BYTES = 300 * 1024 * 1024
#: settings that name a file or folder every host reads
PATH_SETTINGS = ("dataset_root", "source_root", "target_root", "seed_checkpoint", "teacher")

_EXP_ID = re.compile(r"\$\{NNI_EXP_ID\}|\$NNI_EXP_ID\b")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def dispatcher_experiment_config(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The experiment's config as NNI's manager hands it to the dispatcher (``python -m nni --exp_params <base64
    JSON>``, camelCase); None outside such a process or when it cannot be read (JSON only: nothing is executed)."""
    import sys

    args = list(sys.argv if argv is None else argv)
    for i, arg in enumerate(args[:-1]):
        if arg == "--exp_params":
            try:
                value = json.loads(base64.b64decode(args[i + 1], validate=True).decode("utf-8"))
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
            return value if isinstance(value, dict) else None
    return None


def _training_service(experiment: Mapping[str, Any]) -> Any:
    return experiment.get("trainingService")


def is_remote(experiment: Mapping[str, Any]) -> bool:
    """Whether the experiment config (camelCase, as in a YAML file) runs on NNI's remote training service."""
    service = _training_service(experiment)
    services = service if isinstance(service, list) else [service]
    return any(isinstance(s, Mapping) and s.get("platform") == "remote" for s in services)


def _field(experiment: Mapping[str, Any], name: str) -> Any:
    """A training-service field that NNI also takes at the top level (``trialCommand``, ``nniManagerIp``, ...)."""
    service = _training_service(experiment)
    if isinstance(service, Mapping) and service.get(name) is not None:
        return service[name]
    return experiment.get(name)


def manager_ip(experiment: Mapping[str, Any]) -> str | None:
    """``nniManagerIp``, from the training service or the top level."""
    value = _field(experiment, "nniManagerIp")
    return None if value is None else str(value)


def key_file_from_trial_command(command: str, exp_id: str | None = None) -> str | None:
    """The key file that ``command`` gives its trials (``NNI_NAS_EXT_TRIAL_KEY_FILE=... python ...``), with
    ``$NNI_EXP_ID`` replaced by ``exp_id`` when given; None when the command does not set it."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for word in words:
        if not _ASSIGNMENT.match(word):
            break  # only the leading NAME=VALUE words are the command's environment
        name, value = word.split("=", 1)
        if name == KEY_VARIABLE:
            return _EXP_ID.sub(exp_id, value) if exp_id is not None else value
    return None


def _interpreter(command: str) -> str | None:
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    rest = [w for w in words if not _ASSIGNMENT.match(w)] if words else []
    return rest[0] if rest else None


def _is_local_address(ip: str) -> str | None:
    """None when this machine can bind ``ip``; else why not."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((ip, 0))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _upload_size(folder: Path) -> tuple[int, int]:
    files = size = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            files += 1
            try:
                size += (Path(root) / name).stat().st_size
            except OSError:
                pass
            if files > MAX_UPLOAD_FILES:
                return files, size
    return files, size


def remote_problems(experiment: Mapping[str, Any], class_args: Mapping[str, Any], *, base: Path | None = None,
                    check_address: bool = True) -> list[str]:
    """What stops the search from running on NNI's remote training service (module docstring), as messages;
    empty when nothing does or the experiment is not remote. ``base``: the folder relative paths of the config
    are relative to (the config file's); ``check_address``: whether ``nniManagerIp`` must be an address of this
    machine (the manager's)."""
    if not is_remote(experiment):
        return []
    service = _training_service(experiment)
    if isinstance(service, list):
        return ["trainingService: a list (hybrid) with platform remote is not supported; use one remote training "
                "service"]
    problems: list[str] = []
    if service.get("reuseMode"):
        problems.append("trainingService.reuseMode: true runs NNI's legacy trial runner, which gives trials no HTTP "
                        "channel (our trial command needs NNI 3.0's); remove reuseMode (default false)")
    hosts = [str(m.get("host")) for m in service.get("machineList") or [] if isinstance(m, Mapping)]
    ip = manager_ip(experiment)
    if not ip:
        problems.append("trainingService.platform remote: nniManagerIp must be set to this machine's address that "
                        "every host of machineList reaches; without it NNI 3.0 tells the hosts to connect to "
                        "'localhost', i.e. to themselves")
    else:
        try:
            is_v6 = ipaddress.ip_address(ip).version == 6
        except ValueError:
            is_v6 = False
        if is_v6:
            problems.append(f"nniManagerIp {ip!r}: NNI 3.0 builds ws://{ip}:PORT without brackets; give an IPv4 "
                            "address or a host name")
        else:
            why = _is_local_address(ip) if check_address else None
            if why is not None:
                problems.append(f"nniManagerIp {ip!r} is not an address of this machine ({why}); the trial hosts "
                                "connect to NNI's manager there")
            elif _is_loopback(ip):
                others = [h for h in hosts if not _is_loopback(h)]
                if others:
                    problems.append(f"nniManagerIp {ip!r} is a loopback address, reachable only from this machine, "
                                    f"but machineList host {others[0]!r} is another machine")
    problems += _checkpoint_problems(class_args)
    problems += _command_problems(str(_field(experiment, "trialCommand") or ""))
    for key in PATH_SETTINGS:
        value = class_args.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            problems.append(f"tuner.classArgs.{key}={value!r}: on a remote training service every host reads it, and "
                            "'~' or a relative path differs per host; give an absolute path present on every host")
    problems += _upload_problems(_field(experiment, "trialCodeDirectory"), base)
    return problems


def _checkpoint_problems(class_args: Mapping[str, Any]) -> list[str]:
    folder = class_args.get("checkpoint_dir")
    if not folder:
        return ["trainingService.platform remote: tuner.classArgs.checkpoint_dir must name an absolute folder that "
                "NNI's manager and every host of machineList reach at the same path (shared storage: NFS, a cluster "
                "filesystem); the default, <experiment folder>/checkpoints, exists only on this machine, and NNI "
                "3.0's remote service does not use sharedStorage"]
    if not isinstance(folder, str) or not os.path.isabs(folder):
        return [f"tuner.classArgs.checkpoint_dir={folder!r} must be an absolute path on storage every host reaches "
                "at the same path"]
    return []


def _command_problems(command: str) -> list[str]:
    key = key_file_from_trial_command(command)
    example = (f"trialCommand: {KEY_VARIABLE}=/shared/keys/${{NNI_EXP_ID}}.key python -m "
               "nni_nas_ext.nni.trial_entry")
    problems = []
    if key is None:
        problems.append("trainingService.platform remote: the trialCommand must name the experiment's key file on "
                        f"storage every host reaches, e.g. {example} (got {command!r})")
    elif not os.path.isabs(key) or "$" in _EXP_ID.sub("", key):
        problems.append(f"{KEY_VARIABLE} in the trialCommand must be an absolute path (only $NNI_EXP_ID may vary), "
                        f"but got {key!r}")
    interpreter = _interpreter(command)
    if interpreter is not None and "/" in interpreter and not os.path.isabs(interpreter):
        problems.append(f"trialCommand {command!r} uses a relative interpreter ({interpreter!r}), which exists only "
                        "in the uploaded trialCodeDirectory; use `python` (pythonPath's) or an absolute path "
                        "present on every host")
    return problems


def _upload_problems(directory: Any, base: Path | None) -> list[str]:
    if directory is None:
        return []
    folder = Path(os.path.expanduser(str(directory)))
    if not folder.is_absolute() and base is not None:
        folder = base / folder
    if not folder.is_dir():
        return [f"trialCodeDirectory {str(directory)!r} is not a folder ({folder})"]
    files, size = _upload_size(folder)
    if files == 0:
        return [f"trialCodeDirectory {folder} is empty; NNI cannot upload an empty folder: put one file in it"]
    if files > MAX_UPLOAD_FILES or size > MAX_UPLOAD_BYTES:
        count = f"more than {MAX_UPLOAD_FILES:,} files" if files > MAX_UPLOAD_FILES else f"{files:,} files"
        return [f"trialCodeDirectory {folder} holds {count} ({size / 2**20:.0f} MB); NNI's remote training service "
                f"uploads it to every host and refuses more than {MAX_UPLOAD_FILES:,} files or "
                f"{MAX_UPLOAD_BYTES // 2**20} MB. The trials import nni-nas-ext from pythonPath's environment and "
                "need nothing from it: point trialCodeDirectory at a small folder such as examples/remote/trial_code"]
    return []


def remote_warnings(experiment: Mapping[str, Any]) -> list[str]:
    """What NNI 3.0 is known to get wrong with this remote config (warnings: the experiment may still run)."""
    if not is_remote(experiment):
        return []
    service = _training_service(experiment)
    gpus = _field(experiment, "trialGpuNumber")
    machines: Sequence[Any] = service.get("machineList") or [] if isinstance(service, Mapping) else []
    one_per_gpu = [m for m in machines if isinstance(m, Mapping) and int(m.get("maxTrialNumberPerGpu", 1)) == 1]
    if isinstance(gpus, int) and gpus >= 1 and one_per_gpu:
        return [f"trialGpuNumber {gpus}: NNI 3.0's trial keeper never schedules a trial that asks for all of a "
                "host's GPUs (its task scheduler compares gpuNumber >= the host's GPUs); on 1-GPU hosts use "
                "maxTrialNumberPerGpu: 2 or leave trialGpuNumber unset"]
    return []
