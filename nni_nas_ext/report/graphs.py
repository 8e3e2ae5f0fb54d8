"""The lineage tree of a search and the winner's architecture, drawn with matplotlib in layered layouts of our own.

* :func:`lineage_tree` -- one node per candidate whose job carried an architecture (seed, children, incumbents,
  final trainings), an edge from each candidate's ``parent`` labelled with the morphisms the child applied; nodes
  coloured by validation accuracy (grey: failed or no result); the winner's path (seed -> winner) ringed in red.
  Layout: a tidy tree (depth down, leaves side by side in submission order, a parent above its children's middle);
  a search with several roots (LEMONADE's initial networks) is a forest side by side.
* :func:`architecture_graph` -- the winner's graph, a node's trailing BatchNorm/ReLU/dropout folded into its box,
  layered by longest path from the input (networkx's topological generations).

Stable SVG ids: ``tree-node-<n>``, ``tree-edge-<n>`` (its label: ``tree-label-<n>``), ``tree-path-<k>`` (k-th
network of the winner's path, 0: the root), ``arch-node-<n>``, ``arch-edge-<n>``. Text from the experiment is drawn
with ``parse_math=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import networkx as nx
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from nni_nas_ext.core.architecture import INPUT, Architecture

from .experiment import Experiment, Trial
from .figures import Chart, save_figure

__all__ = ["LineageTree", "architecture_graph", "lineage_figure", "lineage_tree", "tree_of", "winner", "winner_path"]

_FOLDED = frozenset({"bn", "relu", "dropout", "identity"})
_MAX_LABEL = 28


def _short(text: str, limit: int = _MAX_LABEL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "~"


@dataclass
class LineageTree:
    """The candidates drawn as a tree: ``nodes`` in drawing order, ``parent`` of each (``None`` for a root)."""

    nodes: list[Trial]
    parent: dict[str, Optional[str]]
    path: list[str]

    @property
    def ids(self) -> list[str]:
        return [t.candidate for t in self.nodes if t.candidate is not None]


def winner(experiment: Experiment) -> Optional[Trial]:
    """The search's winner: the network its final training continued (role ``final``), else the best validation
    accuracy among the networks trained on the training split."""
    by_candidate = experiment.by_candidate()
    for trial in experiment.results():
        if trial.role == "final" and trial.parent in by_candidate and not trial.failed:
            return by_candidate[trial.parent]  # type: ignore[index]
    pool = [t for t in experiment.results() if t.accuracy is not None and not t.final_training and
            t.role not in ("final", "seed_final")]
    return max(pool, key=lambda t: (t.accuracy, -(t.result_s or 0.0)), default=None)


def winner_path(experiment: Experiment, tree: Optional[LineageTree] = None) -> list[str]:
    """Candidate ids from the root (the seed) down to the winner, following each candidate's ``parent``."""
    best = winner(experiment)
    if best is None or best.candidate is None:
        return []
    parent = tree.parent if tree is not None else {t.candidate: t.parent for t in experiment.results() if t.candidate}
    chain, current = [], best.candidate
    while current is not None and current not in chain and current in parent:
        chain.append(current)
        current = parent[current]
    return chain[::-1]


def tree_of(experiment: Experiment) -> LineageTree:
    """The candidates with an architecture (one node per candidate: the latest trial of each) and their parents."""
    latest: dict[str, Trial] = {}
    for trial in [*experiment.trials, *experiment.results()]:  # results() last: a result beats a trial without
        if trial.architecture is not None and trial.candidate is not None:
            latest[trial.candidate] = trial
    nodes = sorted(latest.values(), key=lambda t: (t.submitted_s is None, t.submitted_s or 0.0, t.trial_id))
    parent = {t.candidate: (t.parent if t.parent in latest else None) for t in nodes}
    tree = LineageTree(nodes, parent, [])  # type: ignore[arg-type]
    tree.path = winner_path(experiment, tree)
    return tree


def _tidy_layout(tree: LineageTree) -> dict[str, tuple[float, float]]:
    """Leaves side by side in submission order, a parent above the middle of its children, depth downwards.

    Iterative (a chain of thousands of candidates is fine); a parent cycle (a hostile folder) is cut where it is
    met, so every node gets a place.
    """
    children: dict[Optional[str], list[str]] = {}
    for cid in tree.ids:
        children.setdefault(tree.parent[cid], []).append(cid)
    pos: dict[str, tuple[float, float]] = {}
    entered: set[str] = set()
    next_x = 0.0
    roots = list(children.get(None, []))
    for root in roots + [cid for cid in tree.ids if cid not in roots]:  # the others: only what a cycle cut off
        if root in entered:
            continue
        stack: list[tuple[str, int, bool]] = [(root, 0, False)]
        while stack:
            cid, depth, done = stack.pop()
            if done:  # its children are placed: centre it above them (a leaf takes the next free x)
                below = [pos[k][0] for k in children.get(cid, []) if k in pos and pos[k][1] == -float(depth + 1)]
                if below:
                    x = (below[0] + below[-1]) / 2.0
                else:
                    x, next_x = next_x, next_x + 1.0
                pos[cid] = (x, -float(depth))
                continue
            entered.add(cid)
            stack.append((cid, depth, True))
            stack.extend((kid, depth + 1, False) for kid in reversed(children.get(cid, [])) if kid not in entered)
        next_x += 0.5  # a gap between the trees of a forest
    return pos


#: where an edge's label sits, from the parent (0) to the child (1): siblings' edges fan out from their parent, so
#: their labels are drawn nearer the children, where the edges are furthest apart
_LABEL_AT = 0.7
#: morphisms named on an edge, one a line; a longer chain shows the first ones and how many more
_LABEL_LINES = 4


def _edge_label(child: Trial) -> str:
    names = [m.split("(", 1)[0] for m in child.morphisms]
    if names:
        shown = names if len(names) <= _LABEL_LINES else [*names[:_LABEL_LINES - 1],
                                                          f"+{len(names) - _LABEL_LINES + 1} more"]
        return "\n".join(_short(name, 16) for name in shown)
    return "final\n(train+val)" if child.final_training else "trains on"


def lineage_tree(experiment: Experiment, out: Path) -> Optional[Chart]:
    """Draw the lineage tree (``lineage-tree.svg``/``.png``); ``None`` when no trial's job carried an architecture."""
    tree = tree_of(experiment)
    if not tree.nodes:
        return None
    save_figure(lineage_figure(tree), out, "lineage-tree")
    failed = sum(1 for t in tree.nodes if t.failed)
    return Chart("lineage-tree", "Lineage tree",
                 f"{len(tree.nodes)} networks: every candidate whose job (the trial's parameter, 'job.architecture') "
                 f"carried an architecture, under its 'parent'; an edge names the morphisms the child applied (the "
                 f"result's 'morphisms', else the architecture's lineage), one a line. Colour: validation accuracy "
                 f"('default'); grey X: failed ({failed}). Ringed in red: the winner's path from the seed "
                 f"({len(tree.path)} networks). Labels: the candidate's serial, its role and accuracy.",
                 len(tree.nodes))


def lineage_figure(tree: LineageTree) -> Figure:
    """The lineage tree's figure (text ids: ``tree-label-<n>``, the label of edge ``n``)."""
    pos = _tidy_layout(tree)
    width = max(6.0, 1.15 * (max(x for x, _ in pos.values()) + 1))
    depth = max(-y for _, y in pos.values())
    fig = Figure(figsize=(min(width, 60.0), max(3.0, 1.35 * (depth + 1) + 0.8)), layout="constrained")
    ax = fig.add_subplot()
    accuracies = [t.accuracy for t in tree.nodes if t.accuracy is not None]
    norm = Normalize(min(accuracies, default=0.0), max(accuracies, default=1.0) + 1e-9)
    cmap = colormaps["viridis"]
    on_path = {cid: k for k, cid in enumerate(tree.path)}
    by_id = {t.candidate: t for t in tree.nodes}
    edge = 0
    for cid in tree.ids:
        parent = tree.parent[cid]
        if parent is None:
            continue
        (x0, y0), (x1, y1) = pos[parent], pos[cid]
        highlighted = cid in on_path and parent in on_path
        ax.plot([x0, x1], [y0, y1], "-", color="crimson" if highlighted else "0.55", lw=2.6 if highlighted else 1.0,
                zorder=1, gid=f"tree-edge-{edge}")
        ax.text(x0 + _LABEL_AT * (x1 - x0), y0 + _LABEL_AT * (y1 - y0), _edge_label(by_id[cid]), fontsize=6,
                ha="center", va="center", linespacing=1.1, parse_math=False, zorder=2, gid=f"tree-label-{edge}",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
        edge += 1
    for n, trial in enumerate(tree.nodes):
        x, y = pos[trial.candidate]  # type: ignore[index]
        if trial.candidate in on_path:
            ax.plot([x], [y], "o", ms=19, mfc="none", mec="crimson", mew=2.4, zorder=3,
                    gid=f"tree-path-{on_path[trial.candidate]}")  # type: ignore[index]
        colour = cmap(norm(trial.accuracy)) if trial.accuracy is not None else "0.75"
        marker = "X" if trial.failed else "o"
        ax.plot([x], [y], marker, ms=12, color=colour, mec="black", mew=0.6, zorder=4, gid=f"tree-node-{n}")
        serial = (trial.candidate or "?").rsplit("-", 1)[-1]
        figure = f"{trial.accuracy:.3f}" if trial.accuracy is not None else ("failed" if trial.failed else "-")
        test = (trial.result or {}).get("test_acc")
        if trial.final_training and isinstance(test, (int, float)) and not isinstance(test, bool):
            figure = f"test {float(test):.3f}"  # its 'default' is its parent's: show what it measured itself
        ax.text(x, y - 0.16, f"{_short(serial, 12)} ({_short(trial.role or '?', 12)})\n{figure}", fontsize=6,
                ha="center", va="top", parse_math=False, zorder=5)
    ax.set_axis_off()
    xs = [x for x, _ in pos.values()]
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(-depth - 0.75, 0.45)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="validation accuracy", shrink=0.8)
    return fig


def _groups(arch: Architecture) -> tuple[list[list[str]], dict[str, int]]:
    """Nodes folded into boxes: a BatchNorm, ReLU or dropout joins the box of its only input when it is that
    input's only consumer."""
    groups: list[list[str]] = [[INPUT]]
    box_of: dict[str, int] = {INPUT: 0}
    for nid in arch.topological_order:
        node = arch.node(nid)
        source = node.inputs[0] if len(node.inputs) == 1 else None
        if node.op in _FOLDED and source is not None and source != INPUT and len(arch.consumers(source)) == 1:
            box_of[nid] = box_of[source]
            groups[box_of[nid]].append(nid)
        else:
            box_of[nid] = len(groups)
            groups.append([nid])
    return groups, box_of


def _node_text(arch: Architecture, nid: str) -> str:
    if nid == INPUT:
        return "input " + "x".join(str(s) for s in arch.input_shape)
    node = arch.node(nid)
    if node.op == "conv":
        k = node["kernel"]
        text = f"conv {k}x{k}, {node['out_channels']}" + (f", /{node['stride']}" if node["stride"] != 1 else "")
    elif node.op == "linear":
        text = f"linear {node['out_features']}"
    else:
        text = node.op
    return _short(f"{nid}: {text}", 34)


def architecture_graph(arch: Architecture, out: Path, *, title: str) -> Chart:
    """Draw ``arch`` as a layered graph (``winner-architecture.svg``/``.png``)."""
    groups, box_of = _groups(arch)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(groups)))
    for nid in arch.topological_order:
        for source in arch.node(nid).inputs:
            if box_of[source] != box_of[nid]:
                graph.add_edge(box_of[source], box_of[nid])
    layers = [sorted(layer) for layer in nx.topological_generations(graph)]
    pos = {}
    for depth, layer in enumerate(layers):
        for i, box in enumerate(layer):
            pos[box] = (i - (len(layer) - 1) / 2.0, -float(depth))
    widest = max(len(layer) for layer in layers)
    fig = Figure(figsize=(max(4.5, 2.6 * widest), max(3.0, 0.62 * len(layers) + 0.6)), layout="constrained")
    ax = fig.add_subplot()
    for n, (source, target) in enumerate(sorted(graph.edges)):
        (x0, y0), (x1, y1) = pos[source], pos[target]
        span = y0 - y1
        ax.annotate("", xy=(x1, y1 + 0.2), xytext=(x0, y0 - 0.2), gid=f"arch-edge-{n}", zorder=1,
                    arrowprops={"arrowstyle": "-|>", "color": "0.35", "lw": 0.9, "shrinkA": 0, "shrinkB": 0,
                                "connectionstyle": f"arc3,rad={0.35 if span > 1 else 0.0}"})
    colours = {"conv": "#cfe2f3", "linear": "#d9ead3", "add": "#fce5cd", "concat": "#fce5cd", "maxpool": "#eeeeee",
               "avgpool": "#eeeeee", "gap": "#eeeeee"}
    for box, members in enumerate(groups):
        head = members[0]
        op = "input" if head == INPUT else arch.node(head).op
        extra = [arch.node(m).op for m in members[1:]]
        shape = arch.input_shape if head == INPUT else arch.shape(members[-1])
        label = _node_text(arch, head) + (f" + {'+'.join(extra)}" if extra else "")
        label += "\n-> " + "x".join(str(s) for s in shape)
        x, y = pos[box]
        ax.text(x, y, label, ha="center", va="center", fontsize=7, parse_math=False, zorder=2, gid=f"arch-node-{box}",
                bbox={"boxstyle": "round,pad=0.3", "fc": colours.get(op, "white"), "ec": "0.3", "lw": 0.6})
    ax.set_xlim(-widest / 2.0 - 0.6, widest / 2.0 + 0.6)
    ax.set_ylim(-len(layers) + 0.4, 0.6)
    ax.set_axis_off()
    save_figure(fig, out, "winner-architecture")
    params, macs = arch.num_parameters(), arch.num_macs()
    return Chart("winner-architecture", title,
                 f"{len(arch.nodes)} nodes in {len(groups)} boxes (a BatchNorm, ReLU or dropout is folded into the box "
                 f"of the layer it follows), layered by the longest path from the input; {params:,} parameters, "
                 f"{macs:,} MACs (computed from the architecture, nni_nas_ext.core). From the winner's job "
                 f"('job.architecture' of its trial's parameter).", len(groups))

