"""The NNI web portal of a finished NASH experiment, read in a real browser as a person reads it.

Debian's Chromium (``/usr/bin/chromium``, never a browser downloaded by Playwright) opens the portal of the
session fixture ``nash_experiment`` (tests/conftest.py: a real ``nnictl create`` run, 9 trials, all
SUCCEEDED). Everything asserted comes from the RENDERED pages; the REST API only says what to expect.

- Overview (``/oview``): the experiment, DONE, 9 succeeded trials, the best metric, and the top-trials table
  with every trial id and its default validation accuracy, the search's winner first (the two final
  trainings train on the validation images: their ``default`` is that of the weights they started from).
- Trials detail (``/detail``): one row per trial, SUCCEEDED, its accuracy as ``0.857639 (FINAL)``; the
  ``summary`` column, added as a person adds it, shows each trial's one-line summary; the
  winner's row expanded shows its parameters, where the architecture NNI recorded for it is visible: the
  candidate id and every node id of its graph (``conv1``, ...).
- Hyper-parameter tab: its axes are the search space's and the parameter's top-level keys and the result keys
  NNI receives (``default``, ``test_acc``, ``params``, ``macs``, ``step``, ``role``, ``summary``, ``lineage``:
  ``nni_nas_ext.results.PORTAL_KEYS``, and ``details``), none of the trial's other figures.

Full-page screenshots of both pages are written to the test's tmp folder and, when the environment variable
``NNI_NAS_EXT_ARTIFACTS`` names a folder, copied there too (the paths are printed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from nni_nas_ext.results import PORTAL_KEYS
from nnictl_harness import candidates_in

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError as exc:  # a collection error would hide what to do; fail in the test instead
    _PLAYWRIGHT_ERROR: ImportError | None = exc
else:
    _PLAYWRIGHT_ERROR = None

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
#: ENVIRONMENT.md, "Testing as a person would": without the networking flags Chromium's connections are refused
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: the longest wait for anything the portal renders (it polls the REST API; rendering takes ~1 s here)
TIMEOUT_MS = 20_000
N_TRIALS = 1 + 2 * 3 + 2  # conftest.E2E_CLASS_ARGS: 1 seed + n_steps x n_neighbours + 2 finals


def portal_accuracy(value: float) -> str:
    """A metric as the portal prints it: JavaScript ``x.toFixed(6)``, trailing zeros and dot stripped
    (``formatAccuracy`` in NNI's webui). ``toFixed`` rounds the exact binary value half up."""
    text = str(Decimal(value).quantize(Decimal("1e-6"), rounding=ROUND_HALF_UP))
    return text.rstrip("0").rstrip(".") if "." in text else text


def _only_loopback(route) -> None:
    """The portal asks CDNs for its icon font; nothing leaves the machine (ENVIRONMENT.md)."""
    host = urlsplit(route.request.url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1") or route.request.url.startswith(("data:", "blob:")):
        route.continue_()
    else:
        route.abort()


#: true once the portal's echarts canvases hold drawn points (bluish pixels) and that count stopped changing
#: between two polls: the charts animate in, and a screenshot taken earlier shows empty axes
_CHARTS_DRAWN = """() => {
    let drawn = 0;
    for (const canvas of document.querySelectorAll('canvas')) {
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0 && data[i + 2] - data[i] > 60) drawn++;
    }
    const stable = drawn > 0 && drawn === window.__portalTestDrawn;
    window.__portalTestDrawn = drawn;
    return stable;
}"""


def _save(page: Page, tmp_path: Path, name: str) -> Path:
    page.wait_for_function(_CHARTS_DRAWN, polling=250, timeout=TIMEOUT_MS)
    page.evaluate("window.scrollTo(0, 0)")  # the portal's header is fixed: a scrolled full page shows it mid-way
    path = tmp_path / f"portal-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    artifacts = os.environ.get("NNI_NAS_EXT_ARTIFACTS", "").strip()
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        copied = Path(shutil.copy2(path, Path(artifacts) / path.name))
        print(f"screenshot: {copied}")
    return path


def _search_space_keys(experiment) -> set[str]:
    """The keys of the search space the experiment shows (our dispatcher sends NNI one, for information)."""
    space = experiment.rest("/experiment")["params"].get("searchSpace") or {}
    return set(json.loads(space) if isinstance(space, str) else space)


def _raw_finals(experiment) -> dict[str, dict[str, Any]]:
    """``{trial id: final result}`` as NNI received it (JSON decoded, the portal form left as it is)."""
    out = {}
    for record in experiment.metric_data():
        if record["type"] == "FINAL":
            data = record["data"]
            for _ in range(4):  # JSON text inside a JSON string (nni_nas_ext.results.decode_metric)
                if isinstance(data, str):
                    data = json.loads(data)
            out[record["trialJobId"]] = data
    return out


def _save_plain(page: Page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot of a page without echarts canvases (the parallel coordinates are SVG)."""
    page.wait_for_timeout(1000)  # the axes animate in
    page.evaluate("window.scrollTo(0, 0)")
    path = tmp_path / f"portal-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    artifacts = os.environ.get("NNI_NAS_EXT_ARTIFACTS", "").strip()
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        print(f"screenshot: {Path(shutil.copy2(path, Path(artifacts) / path.name))}")
    return path


def _tree_item(scope, page: Page, key: str):
    """The items of the portal's JSON tree (react-json-tree) whose own label is ``key:``."""
    return scope.locator("li").filter(has=page.locator(":scope > label", has_text=re.compile(rf"^{re.escape(key)}:$")))


def test_the_portal_shows_the_trials_their_accuracies_and_an_architecture(nash_experiment, tmp_path) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: the portal's browser test drives Debian's Chromium. "
                    "Run `make browser` (as root) or `sudo apt-get install chromium`; "
                    "never `playwright install`.")
    if _PLAYWRIGHT_ERROR is not None:
        pytest.fail(f"playwright is not importable ({_PLAYWRIGHT_ERROR}): "
                    "run `make venv` (pip install -c requirements/lock.txt -e '.[test]').")

    # what to expect, from NNI's own records
    trials = nash_experiment.trial_jobs()
    assert len(trials) == N_TRIALS and {t["status"] for t in trials} == {"SUCCEEDED"}, nash_experiment.diagnostics()
    finals = nash_experiment.final_metrics()
    accuracy = {t["trialJobId"]: finals[t["trialJobId"]]["default"] for t in trials}
    # the two final trainings train on the validation images: their "default" is the validation accuracy of
    # the weights they started from (their parent's own), so the portal never ranks them above the winner
    by_candidate = {finals[t]["candidate"]: t for t in accuracy}
    final_trials = [t for t in accuracy if finals[t]["train_on"] == "train+val"]
    assert sorted(finals[t]["role"] for t in final_trials) == ["final", "seed_final"]
    for t in final_trials:
        assert 0 < finals[t]["test_acc"] <= 1
        assert abs(accuracy[t] - accuracy[by_candidate[finals[t]["parent"]]]) < 1e-9, finals[t]
    winner_final = next(t for t in final_trials if finals[t]["role"] == "final")
    winner = by_candidate[finals[winner_final]["parent"]]
    best_value = max(accuracy.values())
    assert accuracy[winner] == best_value, (winner, accuracy)  # the search's winner is the best trial
    best = winner
    candidate = next(candidates_in(nash_experiment.trial_parameters()[best]), None)
    assert candidate is not None and candidate["id"] == finals[best]["candidate"], (best, candidate)
    node_ids = [node["id"] for node in candidate["architecture"]["nodes"]]
    assert "conv1" in node_ids, node_ids
    base = f"http://127.0.0.1:{nash_experiment.port}"

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1920, "height": 1080})
        try:
            context.set_default_timeout(TIMEOUT_MS)
            context.route("**/*", _only_loopback)
            page = context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))

            # ---- overview: the experiment and its top trials ------------------------------------------
            page.goto(f"{base}/oview")
            expect(page.get_by_role("heading", name="nash-e2e")).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.get_by_text(nash_experiment.exp_id, exact=True)).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.locator(".status-text")).to_have_text("DONE", timeout=TIMEOUT_MS)
            best_metric = page.locator(".bestMetric")  # the big number above "Best metric"
            expect(best_metric).to_contain_text("Best metric", timeout=TIMEOUT_MS)
            expect(best_metric.locator(".focus-text")).to_have_text(portal_accuracy(accuracy[best]))
            expect(page.get_by_text(f"{N_TRIALS}/{N_TRIALS}", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
            top_rows = page.locator('[data-automationid="DetailsRow"]')
            expect(top_rows).to_have_count(N_TRIALS, timeout=TIMEOUT_MS)  # "Top trials": 10 shown, 9 exist
            # the portal crowns the search's winner (or its final training, which carries the winner's figure)
            expect(top_rows.first).to_contain_text(re.compile(f"{winner}|{winner_final}"))
            for trial_id, value in accuracy.items():
                row = top_rows.filter(has_text=trial_id)
                expect(row).to_have_count(1, timeout=TIMEOUT_MS)
                expect(row).to_contain_text("SUCCEEDED")
                expect(row.get_by_text(portal_accuracy(value), exact=True)).to_be_visible()
            _save(page, tmp_path, "overview")

            # ---- trials detail: every trial, its final accuracy; the best one's architecture ----------
            page.goto(f"{base}/detail")
            expect(page.get_by_text("Trial jobs", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
            rows = page.locator('#tableList [data-automationid="DetailsRow"]')
            expect(rows).to_have_count(N_TRIALS, timeout=TIMEOUT_MS)
            for trial_id, value in accuracy.items():
                row = rows.filter(has_text=trial_id)
                expect(row).to_have_count(1, timeout=TIMEOUT_MS)
                expect(row).to_contain_text("SUCCEEDED")
                expect(row).to_contain_text(f"{portal_accuracy(value)} (FINAL)")

            # a person adds the one-line summary as a column: every trial says what it trained
            page.get_by_role("button", name="Add/Remove columns").click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("Customize columns")).to_be_visible()
            box = dialog.get_by_role("checkbox", name="summary (metric)", exact=True)  # a result key
            dialog.locator("label").filter(has_text=re.compile(r"summary \(metric\)$")).click()  # as a person clicks
            expect(box).to_be_checked()
            dialog.get_by_role("button", name="Save").click()
            expect(page.get_by_role("columnheader", name=re.compile(r"^summary"))).to_be_visible(timeout=TIMEOUT_MS)
            for trial_id in (winner, winner_final):
                expect(rows.filter(has_text=trial_id)).to_contain_text(finals[trial_id]["summary"])
            assert finals[winner]["summary"].startswith(("child: conv", "incumbent: conv", "seed: conv"))

            # a person clicks the chevron of the best trial's row: its Parameters tab opens
            rows.filter(has_text=best).locator('[data-icon-name="ChevronRight"]').click()
            details = page.locator("#tableList .openRow")
            expect(details).to_have_count(1, timeout=TIMEOUT_MS)
            expect(details.get_by_role("tab", name=re.compile("Parameters"))).to_be_visible()
            job = _tree_item(details, page, "job")  # the signed JSON payload: {format, ..., job: {id, architecture}}
            expect(job).to_have_count(1, timeout=TIMEOUT_MS)
            expect(_tree_item(job, page, "id").first).to_have_text(f'id:"{candidate["id"]}"')
            architecture = _tree_item(job, page, "architecture").first  # {version, ..., nodes: [...]}
            expect(architecture).to_be_visible()
            nodes = _tree_item(architecture, page, "nodes")
            expect(nodes).to_have_count(1)
            shown_ids = [text.removeprefix("id:").strip('"')
                         for text in _tree_item(nodes, page, "id").all_text_contents()]
            assert shown_ids == node_ids, (shown_ids, node_ids)
            expect(nodes).to_contain_text('id:"conv1"')
            # no pickled value anywhere in the parameter; fold the training task, as a reader would
            expect(details.get_by_text("__nni_obj__")).to_have_count(0)
            for key in ("settings",):
                _tree_item(details, page, key).locator(":scope > label").click()
                expect(_tree_item(details, page, key).locator(":scope > ul > li")).to_have_count(0)
            expect(architecture).to_be_visible()
            _save(page, tmp_path, "detail")

            # ---- the "Hyper-parameter" tab: an axis per key of the search space NNI shows, per top-level key
            # of the parameter and per key of the final result as NNI receives it (its portal form:
            # nni_nas_ext.results.PORTAL_KEYS, the trial's other figures as one JSON text under "details")
            page.get_by_role("tab", name="Hyper-parameter").click()
            axes = page.locator(".parcoords svg g.dimension text.label")
            expect(axes.first).to_be_visible(timeout=TIMEOUT_MS)
            shown = set(axes.all_text_contents())
            _save_plain(page, tmp_path, "hyper-parameter")
            space = _search_space_keys(nash_experiment)
            parameter_keys = set(nash_experiment.trial_parameters()[best]["parameters"])
            result_keys = set().union(*(set(r) for r in _raw_finals(nash_experiment).values()))
            assert result_keys == {"default", "test_acc", "params", "macs", "step", "role", "summary", "lineage",
                                   "details"}, result_keys
            assert result_keys <= {*PORTAL_KEYS, "details"}
            assert shown == space | parameter_keys | result_keys, (sorted(shown), space, parameter_keys)
            assert not shown & {"preservation_error", "start_val_acc", "epochs", "epochs_trained", "flops",
                                "timings", "checkpoint", "candidate", "parent"}, shown

            assert not page_errors, page_errors
        finally:
            context.close()
