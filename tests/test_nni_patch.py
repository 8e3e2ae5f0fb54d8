"""The fix of NNI 3.0's FIFO parameter bug: on copies of compat.js, never on the installed file.

The end-to-end test runs a real experiment on a patched *copy* of the whole ``nni_node`` package (hard links,
so it costs nothing; the patch replaces compat.js by a new file, which leaves the installed one untouched) put
first on ``PYTHONPATH``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nni_nas_ext.nni import nni_patch
from nni_nas_ext.nni.nni_patch import ORIGINAL_SHA256, PatchError, apply_patch, patch_status, revert_patch

INSTALLED = nni_patch.compat_js_path()
NNI_NODE = INSTALLED.parents[2]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def original_bytes() -> bytes:
    """NNI 3.0's compat.js: the installed one if pristine, else rebuilt from the patched one."""
    status = patch_status(INSTALLED)
    assert status.state in ("patched", "unpatched"), status.message
    data = INSTALLED.read_bytes()
    if status.state == "patched":
        data = nni_patch._unpatch_text(data.decode()).encode()
    assert hashlib.sha256(data).hexdigest() == ORIGINAL_SHA256
    return data


@pytest.fixture
def compat_copy(tmp_path: Path, original_bytes: bytes) -> Path:
    path = tmp_path / "compat.js"
    path.write_bytes(original_bytes)
    return path


def test_status_of_the_original(compat_copy: Path) -> None:
    status = patch_status(compat_copy)
    assert status.state == "unpatched"
    assert "nni_patch apply" in status.message


def test_apply_is_idempotent_and_keeps_a_backup(compat_copy: Path, original_bytes: bytes) -> None:
    first = apply_patch(compat_copy)
    assert first.changed and first.state == "patched"
    patched = compat_copy.read_bytes()
    assert patched != original_bytes
    assert b"this.parameters.push" not in patched  # no shared queue any more
    assert patch_status(compat_copy).state == "patched"
    assert first.backup is not None and first.backup.read_bytes() == original_bytes

    second = apply_patch(compat_copy)
    assert not second.changed and second.state == "patched"
    assert "already patched" in second.message
    assert compat_copy.read_bytes() == patched


def test_revert_restores_the_original_byte_for_byte(compat_copy: Path, original_bytes: bytes) -> None:
    apply_patch(compat_copy)
    result = revert_patch(compat_copy)
    assert result.changed and result.state == "unpatched"
    assert compat_copy.read_bytes() == original_bytes
    again = revert_patch(compat_copy)
    assert not again.changed and compat_copy.read_bytes() == original_bytes


def test_the_patched_file_is_valid_javascript(compat_copy: Path) -> None:
    apply_patch(compat_copy)
    node = NNI_NODE / "node"
    proc = subprocess.run([str(node), "--check", str(compat_copy)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("edit", ["append", "whitespace", "half_patched"])
def test_unexpected_content_is_refused_and_left_alone(compat_copy: Path, edit: str) -> None:
    text = compat_copy.read_text()
    if edit == "append":
        text += "// local change\n"
    elif edit == "whitespace":
        text = text.replace("this.parameters.shift()", "this.parameters.shift( )")
    else:  # one edit of three applied by hand
        original, patched = nni_patch.PAIRING.edits[0]
        text = text.replace(original, patched)
    compat_copy.write_text(text)
    before = compat_copy.read_bytes()

    assert patch_status(compat_copy).state == "unexpected"
    with pytest.raises(PatchError, match="neither NNI 3.0's compat.js") as info:
        apply_patch(compat_copy)
    assert str(compat_copy) in str(info.value) and "nothing was changed" in str(info.value)
    with pytest.raises(PatchError, match="refusing to revert"):
        revert_patch(compat_copy)
    assert compat_copy.read_bytes() == before
    assert not compat_copy.with_name(compat_copy.name + nni_patch.BACKUP_SUFFIX).exists()


def test_another_nni_version_is_refused(compat_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nni_patch.importlib.metadata, "version", lambda name: "3.1")
    with pytest.raises(PatchError, match=r"nni==3.0 but nni==3.1 is installed"):
        apply_patch(compat_copy)
    assert patch_status(compat_copy).state == "unpatched"


def test_command_line(compat_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(compat_copy)
    assert nni_patch.main(["status", "--path", path]) == 1
    assert nni_patch.main(["apply", "--path", path]) == 0
    assert "patched" in capsys.readouterr().out
    assert nni_patch.main(["--check", "--path", path]) == 0
    assert nni_patch.main(["apply", "--path", path]) == 0
    assert "already patched" in capsys.readouterr().out
    assert nni_patch.main(["--revert", "--path", path]) == 0
    assert nni_patch.main(["status", "--path", path]) == 1
    compat_copy.write_text("nonsense")
    assert nni_patch.main(["apply", "--path", path]) == 2
    assert "refusing to patch" in capsys.readouterr().err
    assert nni_patch.main(["--check", "--path", path]) == 2


def test_the_installed_file_is_nni_or_patched() -> None:
    """The venv's own compat.js is either NNI 3.0's or its patched form (setup may have patched it)."""
    assert patch_status().state in ("patched", "unpatched"), patch_status().message


def _link_tree(src: Path, dst: Path) -> None:
    try:
        shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
    except OSError:
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, symlinks=True)


@pytest.mark.e2e
def test_patched_nni_gives_every_trial_its_own_parameter(tmp_path: Path) -> None:
    from nnictl_harness import NAS_TRIAL_COMMAND, NnictlExperiment, decode_metric, experiment_config
    from _bridge_helpers import TESTS_DIR, TINY_TUNER

    installed_sha = _sha(INSTALLED)
    site = tmp_path / "site"
    _link_tree(NNI_NODE, site / "nni_node")
    copy = site / "nni_node" / "training_service" / "v3" / "compat.js"
    if patch_status(copy).state == "unpatched":
        apply_patch(copy)  # writes a new file: the hard-linked installed one is untouched
    assert patch_status(copy).state == "patched"
    assert _sha(INSTALLED) == installed_sha

    config = experiment_config(tmp_path, tuner={**TINY_TUNER, "classArgs": {"strategy": "random", "seed": 3}},
                               trial_code_directory=TESTS_DIR, trial_concurrency=3, max_trial_number=6,
                               trial_command=NAS_TRIAL_COMMAND)
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)}
    # nnictl starts the manager from the nni_node it imports: the patched copy
    where = subprocess.run([sys.executable, "-c", "import nni_node; print(nni_node.__path__[0])"],
                           env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where) == site / "nni_node"
    with NnictlExperiment.create(config, tmp_path / "exp", env=env) as exp:
        status = exp.wait_for_status(timeout=180)
        assert status == "DONE", exp.diagnostics()
        parameters = exp.trial_parameters()
        finals = {m["trialJobId"]: (decode_metric(m["data"]), int(m["parameterId"]))
                  for m in exp.metric_data() if m["type"] == "FINAL"}
        assert len(finals) == 6, exp.diagnostics()
        for trial_job_id, (metric, received_id) in finals.items():
            recorded = parameters[trial_job_id]
            # the parameter NNI recorded for the trial is the one the trial received and ran
            assert recorded["parameter_id"] == received_id, (trial_job_id, recorded["parameter_id"], received_id)
            sample = recorded["parameters"]["sample"]
            assert (sample["width"], sample["act"]) == (metric["width"], metric["act"]), (trial_job_id, sample)
    assert _sha(INSTALLED) == installed_sha


def test_the_bind_edit_applies_reverts_and_is_valid_javascript(tmp_path: Path) -> None:
    """The loopback edit of rest_server/index.js, on a copy: idempotent, exact revert, node accepts it."""
    installed = nni_patch.BIND.path()
    status = patch_status(installed, fix=nni_patch.BIND)
    assert status.state in ("patched", "unpatched"), status.message
    text = installed.read_text()
    original = text if status.state == "unpatched" else nni_patch._unpatch_text(text, nni_patch.BIND)
    copy = tmp_path / "index.js"
    copy.write_text(original)
    assert patch_status(copy, fix=nni_patch.BIND).state == "unpatched"
    first = apply_patch(copy, fix=nni_patch.BIND)
    assert first.changed and "listen on 127.0.0.1" in first.message
    patched = copy.read_text()
    assert "app.listen(this.port, host)" in patched and "NNI_NAS_EXT_HOST" in patched
    assert not apply_patch(copy, fix=nni_patch.BIND).changed and copy.read_text() == patched
    proc = subprocess.run([str(NNI_NODE / "node"), "--check", str(copy)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    revert_patch(copy, fix=nni_patch.BIND)
    assert copy.read_text() == original
    copy.write_text(original + "// local change\n")
    with pytest.raises(PatchError, match="neither NNI 3.0's index.js"):
        apply_patch(copy, fix=nni_patch.BIND)


def test_the_command_line_applies_both_edits_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    installed = nni_patch.BIND.path()
    text = installed.read_text()
    if patch_status(installed, fix=nni_patch.BIND).state == "patched":
        text = nni_patch._unpatch_text(text, nni_patch.BIND)
    copy = tmp_path / "index.js"
    copy.write_text(text)
    assert nni_patch.main(["status", "--fix", "bind", "--path", str(copy)]) == 1
    assert nni_patch.main(["apply", "--fix", "bind", "--path", str(copy)]) == 0
    assert nni_patch.main(["status", "--fix", "bind", "--path", str(copy)]) == 0
    with pytest.raises(SystemExit):
        nni_patch.main(["apply", "--fix", "all", "--path", str(copy)])
    assert "name its --fix" in capsys.readouterr().err
