"""``index.html``: one self-contained page (no JavaScript, no CDN, no fetch) with the figures as inline SVG.

Every string that comes from the experiment folder goes through :func:`html.escape` (text and attributes); the
page's Content-Security-Policy allows no script and no remote resource, so even a mistake in escaping could not
run code or call out. The PNG and SVG files beside the page are linked by their fixed names.
"""

from __future__ import annotations

import datetime
import html
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

from nni_nas_ext.core.summary import summarize

from .experiment import DB_FILE, STATE_FILE, Experiment, Trial, describe_value, settings_rows
from .figures import Chart
from .graphs import LineageTree

__all__ = ["INDEX", "SOURCES", "write_index"]

INDEX = "index.html"
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"
_SVG_START = re.compile(r"<svg[\s>]")
_METADATA = re.compile(r"<metadata>.*?</metadata>", re.S)

#: which figure came from which record: (what, where)
SOURCES = (
    ("trials, their status and times", f"NNI's database {DB_FILE}: table TrialJobEvent (WAITING: submitted; "
                                       "SUCCEEDED/FAILED/...: ended), times relative to ExperimentProfile.startTime"),
    ("validation accuracy ('default'), test accuracy ('test_acc'), parameters ('params'), MACs ('macs', else "
     "'flops' or 'madds'), latency ('latency_ms', 'latency_device'), role, step, parent, morphisms, failure",
     f"each trial's own final result: {DB_FILE}, table MetricData, type FINAL (the self-describing result the trial "
     "reported; its time: MetricData.timestamp)"),
    ("architectures, lineage (the lineage tree, the winner's graph)", f"the job the search sent, inside each trial's "
     f"parameter: {DB_FILE}, TrialJobEvent.data (our signed envelope's 'job'), matched by the candidate id the "
     "result names, not by NNI's pairing of trials and parameters"),
    ("experiment settings", f"{DB_FILE}, table ExperimentProfile (params of the latest revision: the config as NNI "
                            "holds it, the tuner's classArgs included)"),
    ("strategy class, the search's settings with defaults, phase", f"our dispatcher's state file {STATE_FILE} "
                                                                  "(left out when the file is absent)"),
    ("Pareto front, hypervolume", "computed here by nni_nas_ext.core.pareto from the points above"),
    ("not read", "checkpoints/*.pt (weights: no tensor is loaded), the trials' logs"),
)

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;
color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc}
.meta{color:#555;font-size:.9em} figure{margin:1em 0;padding:.5em;border:1px solid #e3e3e3;overflow-x:auto}
figure svg{max-width:100%;height:auto} figcaption{font-size:.85em;color:#444;margin-top:.4em}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0} th,td{border:1px solid #ddd;padding:.2em .45em;
text-align:left;vertical-align:top} th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{color:#a00} tr.winner td{background:#fff4e5} .note{font-size:.85em;color:#555}
ol.path li{margin:.2em 0} code{font-size:.95em}
"""


def _e(value: Any) -> str:
    """Escaped text of any value (``-`` for None)."""
    return "-" if value is None else html.escape(str(value), quote=True)


def _num(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _int(value: Optional[float]) -> str:
    return "-" if value is None else f"{int(round(value)):,}"


def _inline_svg(path: Path) -> str:
    """The ``<svg>`` element of a file matplotlib wrote (its XML prolog and doctype dropped)."""
    text = path.read_text(encoding="utf-8")
    match = _SVG_START.search(text)
    return _METADATA.sub("", text[match.start():]) if match else ""


def _figure(out: Path, chart: Chart) -> str:
    return (f'<figure id="fig-{chart.name}"><h3>{_e(chart.title)}</h3>\n{_inline_svg(out / f"{chart.name}.svg")}\n'
            f'<figcaption>{_e(chart.caption)} Files: <a href="{chart.name}.png">{chart.name}.png</a>, '
            f'<a href="{chart.name}.svg">{chart.name}.svg</a>.</figcaption></figure>')


def _table(headers: Sequence[str], rows: Iterable[str], table_id: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(rows) + "\n</tbody></table>"


def _summary(experiment: Experiment, best: Optional[Trial], tree: LineageTree) -> str:
    if best is None:
        return "<p>No trial reported a validation accuracy: there is no winner.</p>"
    by_candidate = experiment.by_candidate()
    finals = [t for t in experiment.results() if t.role == "final" and t.parent == best.candidate]
    test = (finals[0].result or {}).get("test_acc") if finals else None
    macs, macs_key = best.cost("macs")
    latency, _ = best.cost("latency_ms")
    device = (best.result or {}).get("latency_device")
    tested = isinstance(test, (int, float))
    items = [f"<li>winner <code>{_e(best.candidate)}</code> (trial {_e(best.trial_id)}, role {_e(best.role)}): "
             f"validation accuracy {_num(best.accuracy)}"
             + (f", test accuracy {_num(float(test))} after its final training" if tested else "")
             + (f", {_int(best.params)} parameters" if best.params is not None else "")
             + (f", {_int(macs)} MACs ('{_e(macs_key)}')" if macs is not None else "")
             + (f", {latency:.3f} ms on {_e(device)}" if latency is not None else "") + "</li>"]
    if best.architecture is not None:  # its layers in one line; a network with cells shows each cell's tree
        items.append(f'<li id="winner-architecture">architecture: <code>{_e(summarize(best.architecture))}</code>'
                     "</li>")
    seed = by_candidate.get(tree.path[0]) if tree.path else None
    if seed is not None and seed is not best:
        items.append(f"<li>seed <code>{_e(seed.candidate)}</code>: validation accuracy {_num(seed.accuracy)}"
                     + (f", {_int(seed.params)} parameters" if seed.params is not None else "") + "</li>")
    path = ""
    if tree.path:
        steps = []
        for cid in tree.path:
            trial = by_candidate.get(cid)
            morphisms = ", ".join(trial.morphisms) if trial is not None else ""
            steps.append(f"<li><code>{_e(cid)}</code> ({_e(trial.role if trial else None)}, validation accuracy "
                         f"{_num(trial.accuracy if trial else None)})" + (f": {_e(morphisms)}" if morphisms else "")
                         + "</li>")
        path = (f"<p>The winner's path, seed to winner ({len(tree.path)} networks; each with the morphisms it applied "
                f"to its parent):</p>\n<ol class=\"path\" id=\"winner-path\">" + "\n".join(steps) + "</ol>")
    return "<ul>" + "\n".join(items) + "</ul>\n" + path


def _trial_row(n: int, trial: Trial, portal: Optional[str], winner_id: Optional[str]) -> str:
    result = trial.result or {}
    macs, _ = trial.cost("macs")
    latency, _ = trial.cost("latency_ms")
    test = result.get("test_acc")
    classes = ["trial"] + (["failed"] if trial.failed else []) + (["winner"] if trial.candidate == winner_id else [])
    tid = _e(trial.trial_id)
    link = (f'<a href="{_e(portal)}/detail" title="NNI\'s trial list (search for {tid})">{tid}</a>' if portal else tid)
    what = result.get("failed") if trial.failed else (", ".join(trial.morphisms) or result.get("lineage"))
    minutes = None if trial.result_s is None else trial.result_s / 60.0
    cells = [link, _e(trial.status), f"<code>{_e(trial.candidate)}</code>", _e(trial.role), _e(result.get("step")),
             f"<code>{_e(trial.parent)}</code>" if trial.parent else "-",
             _num(trial.accuracy), _num(float(test)) if isinstance(test, (int, float)) else "-",
             _int(trial.params), _int(macs), _num(latency, 3), _num(minutes, 2), _e(what)]
    body = "".join(f'<td class="num">{c}</td>' if i in (6, 7, 8, 9, 10, 11) else f"<td>{c}</td>"
                   for i, c in enumerate(cells))
    return f'<tr id="trial-{n}" class="{" ".join(classes)}">{body}</tr>'


def _settings(experiment: Experiment) -> str:
    rows = [f"<tr><td><code>{_e(k)}</code></td><td><code>{_e(v)}</code></td><td>NNI config</td></tr>"
            for k, v in settings_rows(experiment.config)]
    strategy = experiment.strategy
    if strategy is not None:
        rows.append(f"<tr><td><code>strategy class</code></td><td><code>{_e(strategy.strategy_class)}</code></td>"
                    f"<td>state file</td></tr>")
        for key, value in (("search state format", strategy.search_format), ("phase", strategy.phase)):
            if value is not None:
                rows.append(f"<tr><td><code>{key}</code></td><td><code>{_e(value)}</code></td><td>state file</td></tr>")
        rows += [f"<tr><td><code>search.{_e(k)}</code></td><td><code>{_e(describe_value(v))}</code></td>"
                 f"<td>state file (with defaults)</td></tr>" for k, v in strategy.settings.items()]
    return _table(("setting", "value", "from"), rows, "settings")


def write_index(out: Path, experiment: Experiment, charts: Sequence[Chart], tree: LineageTree,
                best: Optional[Trial], *, portal: Optional[str] = None) -> Path:
    """Write ``out/index.html`` from the charts already in ``out``; returns its path."""
    winner_id = best.candidate if best is not None else None
    trial_rows = [_trial_row(n, t, portal, winner_id) for n, t in enumerate(experiment.trials)]
    headers = ("trial", "NNI status", "candidate", "role", "step", "parent", "val acc", "test acc", "params", "MACs",
               "latency ms", "minutes", "morphisms applied / failure")
    absent = [name for name in ("accuracy-params", "accuracy-macs", "accuracy-latency", "hypervolume-time",
                                "lineage-tree", "winner-architecture") if name not in {c.name for c in charts}]
    strategy = experiment.strategy.strategy_class if experiment.strategy else None
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    portal_note = (f'NNI\'s portal: <a href="{_e(portal)}/oview">{_e(portal)}</a>' if portal else
                   f"NNI's portal: not linked (run <code>nnictl view {_e(experiment.exp_id)}</code> and pass "
                   f"<code>--portal http://127.0.0.1:PORT</code> to link the trials)")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(experiment.name)}: nni-nas-ext report</title><style>{_STYLE}</style></head><body>",
        f'<h1 id="title">{_e(experiment.name)}</h1>',
        f'<p class="meta">experiment <code id="experiment-id">{_e(experiment.exp_id)}</code>, folder '
        f"<code>{_e(experiment.folder)}</code>; strategy <code>{_e(strategy)}</code>; "
        f"{len(experiment.trials)} trials; report written {when}. {portal_note}.</p>",
        '<h2 id="result">Result</h2>', _summary(experiment, best, tree),
        '<h2 id="figures">Figures</h2>', *(_figure(out, chart) for chart in charts),
        (f'<p class="note">Left out: {", ".join(absent)} (no trial reported what they need; nothing is made up).</p>'
         if absent else ""),
        '<h2 id="settings-heading">Settings</h2>', _settings(experiment),
        '<h2 id="trials-heading">Trials</h2>',
        f'<p class="note">Every trial NNI recorded ({len(trial_rows)}), in submission order; "minutes": when its '
        "final result arrived. A final training (role final, seed_final) trains on train+val: its val acc is that "
        "of the weights it started from.</p>",
        _table(headers, trial_rows, "trials"),
    ]
    if experiment.problems:
        parts.append('<h2 id="problems">What could not be read</h2><ul>'
                     + "".join(f"<li>{_e(p)}</li>" for p in experiment.problems) + "</ul>")
    parts.append('<h2 id="sources">Where each field comes from</h2>')
    parts.append(_table(("what", "where"), (f"<tr><td>{_e(a)}</td><td>{_e(b)}</td></tr>" for a, b in SOURCES),
                        "sources-table"))
    parts.append("</body></html>\n")
    path = out / INDEX
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
