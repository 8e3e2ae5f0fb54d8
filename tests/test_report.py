"""`python -m nni_nas_ext report`: an experiment's folder in, a self-contained report folder out.

Fast tests read experiment folders laid out as a real run leaves them (tests/_report_helpers.py copies each format
from the code that writes it): the figures exist as PNG and SVG, the page names every trial and loads nothing from
outside, the lineage tree has one node per trial with an architecture, the winner's path runs from the seed to the
winner, a hostile name is escaped, what a strategy lacks is left out, and a missing experiment is named with the
ids that exist. The end-to-end tests write the report of the session's real NASH experiment (tests/conftest.py,
``nash_experiment``: no extra nnictl run), by folder, by id and by ``--port`` as ``make demo`` does, and open it
in Debian's Chromium (Playwright, as tests/test_portal_browser.py) to count what is drawn against NNI's records.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _report_helpers import (
    FakeTrial,
    candidate_result,
    failed_result,
    nash_config,
    nash_search,
    write_experiment_folder,
)

from nni_nas_ext import cli
from nni_nas_ext.core import FnaJob
from nni_nas_ext.nni.dispatcher.state import STATE_FILE_NAME
from nni_nas_ext.report import FIGURE_NAMES, run_report, write_report
from nni_nas_ext.report.experiment import STATE_FILE, ReportError, load_experiment, locate_experiment
from nni_nas_ext.report.graphs import lineage_figure, tree_of, winner_path
from nni_nas_ext.results import SearchResults

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError as exc:  # a collection error would hide what to do; fail in the test instead
    _PLAYWRIGHT_ERROR: ImportError | None = exc
else:
    _PLAYWRIGHT_ERROR = None

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
#: ENVIRONMENT.md, "Testing as a person would" (as tests/test_portal_browser.py)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000
NASH_SEARCH_STATE = {"format": "nni-nas-ext/nash", "version": 1, "phase": "done", "notes": ["a note"],
                     "config": {"n_steps": 2, "n_neighbours": 3, "n_morphisms": 2, "epochs_final": 2}}


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


@pytest.fixture
def nash_folder(tmp_path: Path) -> tuple[Path, list[FakeTrial], dict[str, str]]:
    trials, names = nash_search()
    folder = write_experiment_folder(tmp_path / "nni-experiments", "abc123xy", trials, config=nash_config(),
                                     search_state=NASH_SEARCH_STATE)
    return folder, trials, names


@pytest.fixture(scope="module")
def nash_folder_report(tmp_path_factory: pytest.TempPathFactory
                       ) -> tuple[Path, list[FakeTrial], dict[str, str], Path]:
    """The report of a folder like ``nash_folder``'s, written once for the tests that only read it; and its index."""
    tmp = tmp_path_factory.mktemp("nash-folder-report")
    trials, names = nash_search()
    folder = write_experiment_folder(tmp / "nni-experiments", "abc123xy", trials, config=nash_config(),
                                     search_state=NASH_SEARCH_STATE)
    return folder, trials, names, write_report(folder, tmp / "report")


# ---- what is read -----------------------------------------------------------------------------------------

def test_the_folder_is_read_as_nni_and_the_bridge_wrote_it(nash_folder) -> None:
    folder, trials, names = nash_folder
    experiment = load_experiment(folder)
    assert experiment.exp_id == "abc123xy" and experiment.name == "nash-report"
    assert [t.trial_id for t in experiment.trials] == [t.trial_id for t in trials]  # submission order
    assert {t.trial_id: t.status for t in experiment.trials} == {t.trial_id: t.status for t in trials}
    assert all(t.architecture is not None for t in experiment.trials)
    first = experiment.trials[0]  # times in s from ExperimentProfile.startTime: WAITING, the FINAL metric
    assert first.submitted_s == pytest.approx(1.0) and first.result_s == pytest.approx(29.0)
    assert STATE_FILE.name == STATE_FILE_NAME  # the report reads the file the bridge writes
    assert experiment.strategy is not None and experiment.strategy.phase == "done"
    assert experiment.strategy.settings["n_steps"] == 2 and not experiment.problems


def test_a_result_is_joined_with_the_job_it_names_not_with_nni_s_pairing(tmp_path: Path) -> None:
    trials, names = nash_search()
    # NNI 3.0 bug 1: the trials of c1 and c2 received each other's parameters; their results say what they ran
    trials[1].job, trials[2].job = trials[2].job, trials[1].job
    experiment = load_experiment(write_experiment_folder(tmp_path, "swapped1", trials, config=nash_config()))
    by_trial = {t.trial_id: t for t in experiment.trials}
    for n in (1, 2):
        trial = by_trial[trials[n].trial_id]
        assert trial.candidate == trials[n].result["candidate"]
        assert trial.architecture.id == trials[n].result["arch_id"]


# ---- what is written --------------------------------------------------------------------------------------

def test_the_report_has_every_figure_as_png_and_svg_and_works_offline(nash_folder_report) -> None:
    folder, trials, _, index = nash_folder_report
    assert index.name == "index.html"
    for name in ("accuracy-time", "accuracy-params", "accuracy-macs", "hypervolume-time", "lineage-tree",
                 "winner-architecture"):
        assert (index.parent / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        svg = (index.parent / f"{name}.svg").read_text()
        assert "<svg" in svg and "</svg>" in svg, name
    # no result carries a latency: that figure is left out, not faked
    assert not (index.parent / "accuracy-latency.svg").exists()
    page = index.read_text()
    assert "accuracy-latency" in page  # ... and the page says so
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert re.findall(r'(?:src|href)\s*=\s*"(?:https?:)?//', page) == []  # nothing from the network
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for name in ("accuracy-time", "accuracy-params", "lineage-tree", "winner-architecture"):
        assert f'id="fig-{name}"' in page and f'href="{name}.png"' in page
    caption = re.search(r'id="fig-accuracy-macs".*?<figcaption>(.*?)</figcaption>', page, re.S)
    assert caption is not None and "&#x27;macs&#x27;" in caption.group(1)  # the trial's 'macs' before 'flops'


@pytest.mark.slow
def test_the_page_names_every_trial_and_where_each_field_came_from(nash_folder_report, tmp_path: Path) -> None:
    folder, trials, names, index = nash_folder_report
    page = index.read_text()
    assert _count(r'<tr id="trial-\d+"', page) == len(trials)
    for trial in trials:
        assert trial.trial_id in page and trial.result["candidate"] in page
    assert "TrainingDiverged: the loss is NaN at epoch 1" in page  # the failed child's reason
    assert "tuner.classArgs.n_steps" in page and "nni_nas_ext.nni.nas_strategy.MorphismStrategy" in page
    assert "MetricData" in page and "TrialJobEvent" in page and STATE_FILE_NAME in page
    # the winner's architecture in one line (a network with cells would show each cell's tree)
    assert re.search(r'<li id="winner-architecture">architecture: <code>conv\dx\d-\d+ &gt; .* params</code>', page)
    # without --portal no trial links to a portal; with it each does
    assert "/detail" not in page
    linked = write_report(folder, tmp_path / "linked", portal="http://127.0.0.1:8123").read_text()
    assert linked.count('href="http://127.0.0.1:8123/detail"') == len(trials)


def test_one_point_per_trained_network_and_one_tree_node_per_trial_with_an_architecture(tmp_path: Path) -> None:
    trials, names = nash_search()
    # a customized trial from the portal: no job of ours (the trial entry refused it), no result
    trials.append(FakeTrial("Tcust", None, None, status="FAILED", parameters={"lr": 0.1}))
    index = write_report(write_experiment_folder(tmp_path, "points01", trials, config=nash_config()),
                         tmp_path / "report")
    trained = [t for t in trials if t.result and "failed" not in t.result and t.result["train_on"] == "train"]
    assert len(trained) == 6  # seed, 2 children, incumbent, child, incumbent; not the failure, not the finals
    for name, prefix in (("accuracy-params", "params"), ("accuracy-macs", "macs"), ("accuracy-time", "time")):
        svg = (index.parent / f"{name}.svg").read_text()
        assert _count(rf'id="{prefix}-point-\d+"', svg) == len(trained), name
    with_architecture = [t for t in trials if t.job is not None]
    assert len(with_architecture) == 9
    tree = (index.parent / "lineage-tree.svg").read_text()
    assert _count(r'id="tree-node-\d+"', tree) == len(with_architecture)
    assert _count(r'id="tree-edge-\d+"', tree) == len(with_architecture) - 1  # every one but the seed has a parent
    assert _count(r'id="hypervolume-point-\d+"', (index.parent / "hypervolume-time.svg").read_text()) == len(trained)
    assert len(tree_of(load_experiment(tmp_path / "points01")).nodes) == len(with_architecture)


def test_the_winner_s_path_runs_from_the_seed_to_the_winner(nash_folder_report) -> None:
    folder, _, names, index = nash_folder_report
    path = [names["seed"], names["c1"], names["c4"]]  # c4: the final training's parent
    assert winner_path(load_experiment(folder)) == path
    tree = (index.parent / "lineage-tree.svg").read_text()
    assert _count(r'id="tree-path-\d+"', tree) == len(path)
    page = index.read_text()
    listed = re.search(r'<ol class="path" id="winner-path">(.*?)</ol>', page, re.S)
    assert listed is not None
    assert re.findall(r"<li><code>([^<]+)</code>", listed.group(1)) == path
    assert 'class="trial winner"' in page


def test_the_winner_s_architecture_is_drawn_box_by_box(nash_folder_report) -> None:
    folder, trials, names, index = nash_folder_report
    svg = (index.parent / "winner-architecture.svg").read_text()
    winner = next(t for t in trials if t.result["candidate"] == names["c4"])
    nodes = winner.job["architecture"]["nodes"]
    folded = {"bn", "relu", "dropout"}
    assert 1 <= _count(r'id="arch-node-\d+"', svg) <= len(nodes) + 1
    assert _count(r'id="arch-node-\d+"', svg) >= sum(1 for n in nodes if n["op"] not in folded)
    assert "conv1" in svg  # text stays text (svg.fonttype none)


def test_the_edge_labels_of_a_wide_step_do_not_overlap(tmp_path: Path) -> None:
    # a NASH step of 8 children of 3 morphisms each, as `make demo` draws them: labels at the edges' middles,
    # comma-joined, ran into each other
    from nni_nas_ext.core import Candidate, candidate_id, create_morphism, random_chain
    from nni_nas_ext.search_spaces import nash_seed

    seed_arch = nash_seed(input_shape=(1, 8, 8), num_classes=10, widths=(4, 8, 8))
    rng = np.random.default_rng(3)
    morphisms = [create_morphism(name) for name in ("deepen", "widen", "add_skip", "concat_skip")]
    seed = Candidate(candidate_id(seed_arch, 0), seed_arch, None, 2, "train", False, "seed", 0)
    candidates = [seed] + [Candidate(candidate_id(child, n), child, seed.id, 2, "train", False, "child", 1)
                           for n, child in enumerate((random_chain(seed_arch, morphisms, 3, rng).child
                                                      for _ in range(8)), start=1)]
    trials = [FakeTrial(f"T{n:04d}", c.to_dict(), candidate_result(c, 0.8 + n / 100))
              for n, c in enumerate(candidates)]
    tree = tree_of(load_experiment(write_experiment_folder(tmp_path, "wide0001", trials, config=nash_config())))
    fig = lineage_figure(tree)
    fig.draw_without_rendering()
    labels = [t for t in fig.axes[0].texts if str(t.get_gid()).startswith("tree-label-")]
    assert len(labels) == 8 and all(t.get_text().count("\n") == 2 for t in labels)  # a morphism a line
    boxes = [t.get_window_extent() for t in labels]
    overlapping = [(a, b) for a in range(8) for b in range(a + 1, 8) if boxes[a].overlaps(boxes[b])]
    assert overlapping == [], [(labels[a].get_text(), labels[b].get_text()) for a, b in overlapping]


def test_no_point_or_star_is_hidden_behind_a_legend(nash_folder, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # the seed's final training tests at 0.78, last and lowest: a legend fixed at the lower right covered its star
    from nni_nas_ext.report import figures

    drawn = {}
    save = figures.save_figure

    def keep(fig, out, name, *args, **kwargs):
        drawn[name] = fig
        save(fig, out, name, *args, **kwargs)

    monkeypatch.setattr(figures, "save_figure", keep)
    folder, _, _ = nash_folder
    write_report(folder, tmp_path / "report")
    assert {"accuracy-time", "accuracy-params", "accuracy-macs"} <= set(drawn)
    for name, fig in drawn.items():
        legend = fig.axes[0].get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent()
        for line in fig.axes[0].get_lines():
            if re.search(r"-(point|test)-\d+$", str(line.get_gid())):
                x, y = fig.axes[0].transData.transform((line.get_xdata()[0], line.get_ydata()[0]))
                assert not box.contains(x, y), (name, line.get_gid())


def test_a_latency_is_plotted_when_the_trials_measured_it(tmp_path: Path) -> None:
    trials, _ = nash_search(latency=True)
    index = write_report(write_experiment_folder(tmp_path, "latency1", trials, config=nash_config()),
                         tmp_path / "report")
    svg = (index.parent / "accuracy-latency.svg").read_text()
    assert _count(r'id="latency-point-\d+"', svg) == 6


def test_fna_jobs_get_a_report_without_a_lineage_tree(tmp_path: Path) -> None:
    jobs = [FnaJob("seed-0000", "seed", 2), FnaJob("adapt-0001", "adapt", 2, parent="seed-0000"),
            FnaJob("seed_finetune-0002", "seed_finetune", 2, parent="seed-0000")]
    trials = []
    for n, (job, acc) in enumerate(zip(jobs, (0.7, 0.8, 0.75))):
        result = {"default": acc, "candidate": job.id, "role": job.role, "kind": job.kind, "arch_id": f"a{n}",
                  "params": 1000 * (n + 1), "madds": 20_000 * (n + 1), "epochs": 2}
        if job.kind == "seed_finetune":
            result["test_acc"] = 0.74
        trials.append(FakeTrial(f"F{n:04d}", job.to_dict(), result, kind="fna_job"))
    index = write_report(write_experiment_folder(tmp_path, "fnaexp01", trials, config=nash_config("fna")),
                         tmp_path / "report")
    assert not (index.parent / "lineage-tree.svg").exists()  # FNA's jobs carry no morphism lineage
    assert not (index.parent / "winner-architecture.svg").exists()
    svg = (index.parent / "accuracy-macs.svg").read_text()
    assert _count(r'id="macs-point-\d+"', svg) == 3
    page = index.read_text()
    caption = re.search(r'id="fig-accuracy-macs".*?<figcaption>(.*?)</figcaption>', page, re.S)
    assert caption is not None and "madds" in caption.group(1) and "flops" not in caption.group(1)  # its key
    assert re.search(r"Left out: [^<]*lineage-tree", page)  # said, not drawn empty


@pytest.mark.slow
def test_a_hostile_name_is_escaped_everywhere(tmp_path: Path) -> None:
    trials, names = nash_search()
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    trials[5].result = dict(failed_result_of(trials[5]), failed=f"</td>{hostile}")
    trials.append(FakeTrial("Tbad", None, {"default": 0.5, "candidate": hostile, "role": hostile, "params": 10,
                                           "summary": hostile}, parameters={"x": hostile}))
    folder = write_experiment_folder(tmp_path, "hostile1", trials, config={**nash_config(hostile)})
    index = write_report(folder, tmp_path / "report")
    for path in [index, *index.parent.glob("*.svg")]:
        text = path.read_text().lower()
        assert "<script" not in text and "<img" not in text, path.name
    page = index.read_text()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page  # shown, as text
    assert page.count("Tbad") >= 1 and _count(r'<tr id="trial-\d+"', page) == len(trials)


def failed_result_of(trial: FakeTrial) -> dict[str, Any]:
    from nni_nas_ext.core import Candidate

    return failed_result(Candidate.from_dict(trial.job), "boom")


@pytest.mark.slow
def test_an_earlier_report_s_figures_that_no_longer_apply_are_removed(tmp_path: Path) -> None:
    trials, _ = nash_search(latency=True)
    out = tmp_path / "report"
    write_report(write_experiment_folder(tmp_path, "withlat1", trials, config=nash_config()), out)
    assert (out / "accuracy-latency.svg").exists()
    trials, _ = nash_search()
    write_report(write_experiment_folder(tmp_path, "nolat001", trials, config=nash_config()), out)
    assert not (out / "accuracy-latency.svg").exists() and not (out / "accuracy-latency.png").exists()
    assert set(FIGURE_NAMES) >= {p.stem for p in out.glob("*.svg")}


# ---- the command ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_command_finds_an_id_and_prints_the_page_s_path(nash_folder, tmp_path: Path, capsys) -> None:
    folder, _, _ = nash_folder
    assert cli.main(["report", "abc123xy", "--experiment-dir", str(folder.parent)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(folder.resolve() / "report" / "index.html")  # default: <experiment folder>/report
    assert cli.main(["report", str(folder), "--out", str(tmp_path / "elsewhere")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str((tmp_path / "elsewhere" / "index.html").resolve())


def test_a_missing_experiment_is_named_with_the_ids_that_exist(nash_folder, tmp_path: Path, capsys) -> None:
    folder, _, _ = nash_folder
    with pytest.raises(ReportError) as caught:
        locate_experiment("nosuch99", str(folder.parent))
    message = str(caught.value)
    assert "'nosuch99'" in message and "abc123xy" in message and "--experiment-dir" in message
    assert cli.main(["report", "nosuch99", "--experiment-dir", str(folder.parent)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no experiment 'nosuch99'") and "abc123xy" in err
    # a folder that is not an experiment's, and a value that is neither a folder nor an id
    (tmp_path / "plain").mkdir()
    assert cli.main(["report", str(tmp_path / "plain")]) == 2
    assert "db/nni.sqlite is missing" in capsys.readouterr().err
    assert cli.main(["report", "../not an id"]) == 2
    assert "neither an existing folder nor an experiment id" in capsys.readouterr().err
    assert cli.main(["report"]) == 2
    assert "give an experiment id or folder" in capsys.readouterr().err


def test_a_database_that_is_not_nni_s_is_refused_with_a_message(tmp_path: Path, capsys) -> None:
    (tmp_path / "junk0001" / "db").mkdir(parents=True)
    (tmp_path / "junk0001" / "db" / "nni.sqlite").write_bytes(b"this is not an SQLite file" * 100)
    assert cli.main(["report", str(tmp_path / "junk0001"), "--out", str(tmp_path / "r")]) == 2
    assert "NNI's database cannot be read" in capsys.readouterr().err


def test_a_portal_url_must_be_a_plain_http_url(nash_folder, tmp_path: Path) -> None:
    folder, _, _ = nash_folder
    err = io.StringIO()
    assert run_report(str(folder), out=str(tmp_path / "r"), portal="javascript:alert(1)", stderr=err) == 2
    assert "--portal must be an http(s) URL" in err.getvalue()
    assert not (tmp_path / "r").exists()


# ---- end to end: the session's real NASH experiment (tests/conftest.py) -----------------------------------

def _expected(nash_experiment) -> dict[str, Any]:
    """What the report must show, from NNI's own records (REST), not from the report's reader."""
    trials = nash_experiment.trial_jobs()
    finals = nash_experiment.final_metrics()
    results = SearchResults.from_metric_data(nash_experiment.metric_data())
    winner = results.results[results.winner_final["parent"]]
    return {
        "trials": [t["trialJobId"] for t in trials],
        "points": {m["candidate"] for m in finals.values() if "failed" not in m and m.get("train_on") == "train"},
        "nodes": {m["candidate"] for m in finals.values() if "arch_id" in m},
        "path": [r["candidate"] for r in results.ancestry(winner["candidate"])],
    }


@pytest.fixture(scope="module")
def nash_report(nash_experiment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nash-report")
    stdout = io.StringIO()
    code = run_report(str(nash_experiment.exp_dir), out=str(out), portal=f"http://127.0.0.1:{nash_experiment.port}",
                      stdout=stdout)
    assert code == 0, nash_experiment.diagnostics()
    assert stdout.getvalue().strip() == str((out / "index.html").resolve())
    return out / "index.html"


@pytest.mark.e2e
def test_the_report_of_a_real_nash_experiment_counts_what_nni_recorded(nash_report, nash_experiment) -> None:
    expected = _expected(nash_experiment)
    assert len(expected["trials"]) == 1 + 2 * 3 + 2 and len(expected["points"]) == 7
    page = nash_report.read_text()
    assert _count(r'<tr id="trial-\d+"', page) == len(expected["trials"])
    for trial_id in expected["trials"]:
        assert trial_id in page
    svg = (nash_report.parent / "accuracy-params.svg").read_text()
    assert _count(r'id="params-point-\d+"', svg) == len(expected["points"])
    tree = (nash_report.parent / "lineage-tree.svg").read_text()
    assert _count(r'id="tree-node-\d+"', tree) == len(expected["nodes"]) == len(expected["trials"])
    assert _count(r'id="tree-path-\d+"', tree) == len(expected["path"])
    assert winner_path(load_experiment(nash_experiment.exp_dir)) == expected["path"]
    assert (nash_report.parent / "winner-architecture.png").is_file()


@pytest.mark.e2e
def test_the_report_command_finds_the_experiment_by_id_and_by_port(nash_experiment, tmp_path: Path, capsys) -> None:
    by_id = tmp_path / "by-id"
    assert cli.main(["report", nash_experiment.exp_id, "--experiment-dir", str(nash_experiment.exp_dir.parent),
                     "--out", str(by_id)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(by_id.resolve() / "index.html")
    by_port = tmp_path / "by-port"  # what `make demo` runs, the portal still up
    assert cli.main(["report", "--port", str(nash_experiment.port), "--out", str(by_port)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(by_port.resolve() / "index.html")
    page = (by_port / "index.html").read_text()
    assert f'href="http://127.0.0.1:{nash_experiment.port}/detail"' in page
    assert nash_experiment.exp_id in page


def _save(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"report-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    # as tests/test_portal_browser.py: into NNI_NAS_EXT_ARTIFACTS (make test: tests/output/); tests/output/ otherwise
    artifacts = os.environ.get("NNI_NAS_EXT_ARTIFACTS", "").strip() or str(ROOT / "tests" / "output")
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    copied = Path(shutil.copy2(path, Path(artifacts) / path.name))
    print(f"screenshot: {copied}")
    return path


@pytest.mark.e2e
def test_the_report_opens_offline_in_a_browser_with_every_point_and_node(nash_report, nash_experiment,
                                                                          tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: the report's browser test drives Debian's Chromium. "
                    "Run `make browser` (as root) or `sudo apt-get install chromium`; never `playwright install`.")
    if _PLAYWRIGHT_ERROR is not None:
        pytest.fail(f"playwright is not importable ({_PLAYWRIGHT_ERROR}): "
                    "run `make venv` (pip install -c requirements/lock.txt -e '.[test]').")
    expected = _expected(nash_experiment)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            requested: list[str] = []
            page_errors: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(nash_report.as_uri())
            expect(page.locator("#title")).to_have_text("nash-e2e")
            expect(page.locator("#experiment-id")).to_have_text(nash_experiment.exp_id)
            # every trained network is a point, every trial with an architecture a node of the tree
            points = page.locator('#fig-accuracy-params svg g[id^="params-point-"]')
            expect(points).to_have_count(len(expected["points"]))
            nodes = page.locator('#fig-lineage-tree svg g[id^="tree-node-"]')
            expect(nodes).to_have_count(len(expected["nodes"]))
            expect(page.locator('#fig-lineage-tree svg g[id^="tree-path-"]')).to_have_count(len(expected["path"]))
            expect(page.locator("#fig-lineage-tree svg")).to_be_visible()
            expect(page.locator("#fig-winner-architecture svg")).to_be_visible()
            rows = page.locator("table#trials tbody tr")
            expect(rows).to_have_count(len(expected["trials"]))
            for trial_id in expected["trials"]:
                expect(rows.filter(has_text=trial_id)).to_have_count(1)
            path = page.locator("#winner-path li")
            expect(path).to_have_count(len(expected["path"]))
            for item, candidate in zip(path.all(), expected["path"]):
                expect(item).to_contain_text(candidate)
            _save(page, tmp_path, "nash")
            # offline: the page asked for nothing but itself (and the colour bar's inline data: image)
            assert all(url.startswith(("file://", "data:")) for url in requested), requested
            assert not page_errors, page_errors
        finally:
            context.close()
