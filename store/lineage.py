"""Lineage as a `networkx.DiGraph`, and writing it as a picture or a graph file.

Nodes are program ids; an edge runs from parent to child. Node attributes: `name`,
`structural_hash`, `complexity`, `statements`, `seed` (True when the program has no parent
anywhere in the database), `depth` (generations from the program asked about: negative for
ancestors, positive for descendants) and, when it has a numeric score, `best_score`. Edge
attributes: `mutation` (several kinds are joined with ``,`` when the same pair was linked
more than once) and `campaigns` (ids, joined with ``,``; empty for edges outside a
campaign). The graph's own attribute `root` is the program asked about.
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


def lineage_graph(s: Session, program: ProgramRef, *, descendants: bool = False,
                  campaign: CampaignRef | None = None) -> nx.DiGraph:
    root = program_row(s, program).id
    camp = campaign_id(s, campaign)
    graph = nx.DiGraph(root=root)
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
        stmt = (select(m.Evaluation.program_id, func.max(m.Evaluation.rank_score))
                .where(m.Evaluation.program_id.in_(chunk),
                       m.Evaluation.rank_score.is_not(None))
                .group_by(m.Evaluation.program_id))
        if camp is not None:
            stmt = stmt.where(m.Evaluation.campaign_id == camp)
        for pid, score in s.execute(stmt):
            graph.nodes[pid]["best_score"] = float(score)


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
    data = graph.nodes[node]
    label = f"#{node} {data.get('name', '?')}\nc={data.get('complexity', '?')}"
    if "best_score" in data:
        label += f" s={data['best_score']:.3g}"
    return label


def to_dot(graph: nx.DiGraph) -> str:
    """Graphviz DOT text (written by hand: pydot/pygraphviz are not dependencies)."""
    def q(text: object) -> str:
        return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace(
            "\n", "\\n") + '"'

    root = graph.graph.get("root")
    lines = ["digraph lineage {", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="white", '
             'fontname="Helvetica"];']
    for node in sorted(graph.nodes):
        data = graph.nodes[node]
        fill = "#ffd54f" if node == root else ("#c8e6c9" if data.get("seed") else "white")
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
    colors = ["#ffd54f" if n == root else ("#c8e6c9" if graph.nodes[n].get("seed") else
                                            "#e3f2fd") for n in graph.nodes]
    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=True, arrowsize=12,
                           edge_color="#607d8b", node_size=3200)
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=colors, node_size=3200,
                           edgecolors="#37474f", node_shape="s")
    nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7,
                            labels={n: _label(graph, n) for n in graph.nodes})
    if graph.number_of_edges() <= 60:
        nx.draw_networkx_edge_labels(graph, pos, ax=ax, font_size=6, rotate=False, edge_labels={
            (u, v): d.get("mutation", "") for u, v, d in graph.edges(data=True)})
    ax.set_title(f"lineage of program {root}" if root is not None else "lineage")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
