"""Lineage as a `networkx.DiGraph`, and writing it as a picture or a graph file.

Nodes are program ids; an edge runs from parent to child. Node attributes: `name`,
`structural_hash`, `complexity`, `statements`, `seed` (True when the program has no parent
anywhere in the database), `depth` (generations from the program asked about: negative for
ancestors, positive for descendants) and, when it has a numeric score, `best_score` with
`score_suite` and `score_stage`: its best score on the furthest stage of the search it
reached (2, else 1, else the screening 0; never a held-out validation, stage 3), on that
stage's suite. Edge attributes: `mutation` (several kinds are joined with ``,`` when the
same pair was linked more than once) and `campaigns` (ids, joined with ``,``; empty for
edges outside a campaign). The graph's own attributes: `root`, the program asked about, and
`legend`, what the drawing's colours and numbers mean (every written format carries it).
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import models as m
from .queries import edges_of
from .refs import CampaignRef, ProgramRef, campaign_id, program_row

FORMATS = (".png", ".svg", ".pdf", ".dot", ".gv", ".graphml")

# The search's stages as stored (`search.stages`, which the store may not import): a node's
# score comes from the furthest of these it reached; 3, the held-out validation, never.
SCORE_STAGES = (2, 1, 0)
STAGE_NAMES = {2: "stage 2", 1: "stage 1", 0: "screening"}
ROOT_COLOR, SEED_COLOR, OTHER_COLOR = "#ffd54f", "#c8e6c9", "#e3f2fd"
LEGEND = ("yellow: the program asked about; green: a seed; blue: the others. "
          "#id name; c = complexity; score on SUITE (stage): the program's best score on the "
          "furthest search stage it reached (stage 2, else stage 1, else the screening), "
          "on that stage's suite (1 = tuned AdamW, higher is better). "
          "Edges: parent to child, labelled with the mutation.")


def lineage_graph(s: Session, program: ProgramRef, *, descendants: bool = False,
                  campaign: CampaignRef | None = None) -> nx.DiGraph:
    root = program_row(s, program).id
    camp = campaign_id(s, campaign)
    graph = nx.DiGraph(root=root, legend=LEGEND)
    depth = {root: 0}
    _walk(s, graph, depth, root, towards="parents", sign=-1, campaign=camp)
    if descendants:
        _walk(s, graph, depth, root, towards="children", sign=+1, campaign=camp)
    graph.add_node(root)
    _annotate(s, graph, depth, camp)
    return graph


def _walk(s: Session, graph: nx.DiGraph, depth: dict[int, int], root: int, *, towards: str,
          sign: int, campaign: int | None) -> None:
    """Breadth-first, one query per generation; a visited set ends cycles (a mutation can
    recreate an ancestor, since programs are shared by hash)."""
    frontier, seen = [root], {root}
    while frontier:
        nxt: list[int] = []
        for e in edges_of(s, frontier, towards=towards, campaign=campaign):
            _add_edge(graph, e)
            here, other = (e.child_id, e.parent_id) if towards == "parents" else \
                (e.parent_id, e.child_id)
            if other not in seen:
                seen.add(other)
                depth.setdefault(other, depth[here] + sign)
                nxt.append(other)
        frontier = nxt


def _add_edge(graph: nx.DiGraph, e) -> None:
    camp = "" if e.campaign_id is None else str(e.campaign_id)
    if graph.has_edge(e.parent_id, e.child_id):
        data = graph.edges[e.parent_id, e.child_id]
        data["mutation"] = ",".join(sorted(set(data["mutation"].split(",")) | {e.mutation}))
        camps = set(filter(None, data["campaigns"].split(","))) | ({camp} if camp else set())
        data["campaigns"] = ",".join(sorted(camps, key=int))
    else:
        graph.add_edge(e.parent_id, e.child_id, mutation=e.mutation, campaigns=camp)


def _annotate(s: Session, graph: nx.DiGraph, depth: dict[int, int], camp: int | None) -> None:
    ids = list(graph.nodes)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for p in s.scalars(select(m.Program).where(m.Program.id.in_(chunk))):
            graph.nodes[p.id].update(name=p.name, structural_hash=p.structural_hash,
                                     complexity=p.complexity, statements=p.statements,
                                     depth=depth.get(p.id, 0), seed=True)
        with_parents = s.scalars(select(m.LineageRow.child_id).distinct()
                                 .where(m.LineageRow.child_id.in_(chunk)))
        for pid in with_parents:
            graph.nodes[pid]["seed"] = False
        E = m.Evaluation
        stmt = (select(E.program_id, E.stage, E.suite, func.max(E.rank_score))
                .where(E.program_id.in_(chunk), E.rank_score.is_not(None),
                       E.stage.in_(SCORE_STAGES))
                .group_by(E.program_id, E.stage, E.suite))
        if camp is not None:
            stmt = stmt.where(E.campaign_id == camp)
        best: dict[int, tuple[int, float, str]] = {}
        for pid, stage, suite, score in s.execute(stmt):
            key = (SCORE_STAGES.index(stage), -float(score), suite)
            if pid not in best or key < (SCORE_STAGES.index(best[pid][0]), -best[pid][1],
                                         best[pid][2]):
                best[pid] = (stage, float(score), suite)
        for pid, (stage, score, suite) in best.items():
            graph.nodes[pid].update(best_score=score, score_suite=suite, score_stage=stage)


# ---- writing -----------------------------------------------------------------------------

def write_lineage(graph: nx.DiGraph, path: str | Path) -> Path:
    """Write `graph` to `path`; the suffix picks the format: .png/.svg/.pdf (drawn with
    matplotlib), .dot/.gv (Graphviz text) or .graphml."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unsupported lineage format {path.suffix or '(none)'!r} "
                         f"(use {', '.join(FORMATS)})")
    if suffix == ".graphml":
        nx.write_graphml(graph, path)
    elif suffix in (".dot", ".gv"):
        path.write_text(to_dot(graph), encoding="utf-8")
    else:
        draw(graph, path)
    return path


def _label(graph: nx.DiGraph, node: int) -> str:
    """``#12 c8`` / ``c=3`` / ``0.675 on tiny`` / ``(stage 2)``: every score names its
    suite."""
    data = graph.nodes[node]
    label = f"#{node} {data.get('name', '?')}\nc={data.get('complexity', '?')}"
    if "best_score" in data:
        stage = STAGE_NAMES.get(data.get("score_stage"), f"stage {data.get('score_stage')}")
        label += f"\n{data['best_score']:.3g} on {data.get('score_suite', '?')}\n({stage})"
    return label


def to_dot(graph: nx.DiGraph) -> str:
    """Graphviz DOT text (written by hand: pydot/pygraphviz are not dependencies)."""
    def q(text: object) -> str:
        return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace(
            "\n", "\\n") + '"'

    root = graph.graph.get("root")
    lines = ["digraph lineage {", "  rankdir=TB;",
             f"  label={q(graph.graph.get('legend', LEGEND))};",
             '  labelloc=b; labeljust=l; fontsize=10; fontname="Helvetica";',
             ('  node [shape=box, style="rounded,filled", fillcolor="white", '
              'fontname="Helvetica"];')]
    for node in sorted(graph.nodes):
        data = graph.nodes[node]
        fill = ROOT_COLOR if node == root else (SEED_COLOR if data.get("seed") else
                                                OTHER_COLOR)
        lines.append(f"  {node} [label={q(_label(graph, node))}, fillcolor={q(fill)}];")
    for u, v, data in sorted(graph.edges(data=True)):
        lines.append(f"  {u} -> {v} [label={q(data.get('mutation', ''))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(graph: nx.DiGraph, path: Path) -> None:
    """A layered drawing: one row per generation, the program asked about highlighted,
    seeds in green."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    for node in graph.nodes:
        graph.nodes[node].setdefault("depth", 0)
    layers: dict[int, list[int]] = {}
    for node in graph.nodes:
        layers.setdefault(graph.nodes[node]["depth"], []).append(node)
    pos = {}
    for d, nodes in layers.items():
        nodes.sort()
        for i, node in enumerate(nodes):
            pos[node] = (i - (len(nodes) - 1) / 2, -d)
    width = max(len(v) for v in layers.values())
    fig, ax = plt.subplots(figsize=(min(4 + 2.2 * width, 60), min(2 + 1.6 * len(layers), 60)))
    root = graph.graph.get("root")
    colors = [ROOT_COLOR if n == root else (SEED_COLOR if graph.nodes[n].get("seed") else
                                            OTHER_COLOR) for n in graph.nodes]
    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=True, arrowsize=12,
                           edge_color="#607d8b", node_size=5600)
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=colors, node_size=5600,
                           edgecolors="#37474f", node_shape="s")
    nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7,
                            labels={n: _label(graph, n) for n in graph.nodes})
    if graph.number_of_edges() <= 60:
        nx.draw_networkx_edge_labels(graph, pos, ax=ax, font_size=6, rotate=False, edge_labels={
            (u, v): d.get("mutation", "") for u, v, d in graph.edges(data=True)})
    ax.set_title(f"lineage of program {root}" if root is not None else "lineage")
    ax.axis("off")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(facecolor=ROOT_COLOR, edgecolor="#37474f",
                             label="the program asked about"),
                       Patch(facecolor=SEED_COLOR, edgecolor="#37474f", label="a seed"),
                       Patch(facecolor=OTHER_COLOR, edgecolor="#37474f", label="the others")],
              loc="upper left", fontsize=7, frameon=False)
    fig.text(0.01, 0.01, "#id name; c = complexity; score on SUITE (stage): the best on the "
             "furthest search stage reached\n(stage 2, else 1, else the screening), on that "
             "stage's suite; 1 = tuned AdamW, higher is better. Edges: the mutation.",
             fontsize=7, va="bottom", ha="left")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
