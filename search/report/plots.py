"""The report's pictures, as PNG bytes: pure functions of `search.report.data` values.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, so no global
state and no display), and carry no user-controlled text: program names and campaign names
stay in the page, where they are escaped; a plot names programs by id and suites by their
stored labels (letters, digits and ``_.:+/-``, which mathtext leaves alone).
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .data import CampaignSeries, Pareto, StageSeries

THIS = "#1565c0"  # the campaign
CONTROL = "#e65100"  # its random-search control
DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _series(ax, series: StageSeries, color: str, label: str) -> None:
    """One campaign's scores on one stage: each evaluation a dot, the running best a step."""
    xs = range(1, len(series.scores) + 1)
    points = [(x, s) for x, s in zip(xs, series.scores) if s is not None]
    if points:
        ax.scatter(*zip(*points), s=14, color=color, alpha=0.4, linewidths=0)
    best = [(x, b) for x, b in zip(xs, series.running_best) if b is not None]
    if best:
        ax.step(*zip(*best), where="post", color=color, linewidth=2, label=label)
        # the improvements, solid: a stage with one evaluation still shows its point
        records = [(x, b) for i, (x, b) in enumerate(best) if i == 0 or b > best[i - 1][1]]
        ax.scatter(*zip(*records), s=30, color=color, zorder=3, linewidths=0)


def progress_png(progress: CampaignSeries, control: CampaignSeries | None) -> bytes | None:
    """The running best score against evaluations, one panel per stage (stage 1, stage 2),
    with the random-search control's beside it where it ran on the same suite."""
    if not progress.stages:
        return None
    fig = Figure(figsize=(5.2 * len(progress.stages), 4.0), layout="constrained")
    axes = fig.subplots(1, len(progress.stages), squeeze=False)[0]
    for ax, series in zip(axes, progress.stages):
        _series(ax, series, THIS, f"this campaign ({progress.strategy}): best so far")
        other = control.stage(series.stage) if control else None
        if other is not None and other.suite == series.suite:
            _series(ax, other, CONTROL, f"random-search control (campaign {control.campaign_id})"
                                        ": best so far")
        ax.axhline(1.0, color="#616161", linestyle=":", linewidth=1, label="tuned AdamW (1.0)")
        ax.set_title(f"stage {series.stage}: scores on {series.suite}")
        ax.set_xlabel(f"stage-{series.stage} evaluations, in commit order")
        ax.set_ylabel(f"score on {series.suite} (tuned AdamW = 1)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, max(len(series.scores), len(other.scores) if other else 0) + 0.5)
        ax.grid(alpha=0.3)
    # one legend for all panels, below them: inside, it would hide points
    labelled: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labelled.setdefault(label, handle)
    fig.legend(list(labelled.values()), list(labelled), loc="outside lower center",
               ncols=len(labelled), fontsize=8, frameon=False)
    return _png(fig)


def pareto_png(pareto: Pareto) -> bytes:
    """Every program's best score on the suite against its complexity, and the front."""
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.subplots()
    if pareto.cloud:
        ax.scatter([p.complexity for p in pareto.cloud], [p.score for p in pareto.cloud],
                   s=14, color="#90a4ae", alpha=0.6, linewidths=0, label="programs")
    if pareto.front:
        xs = [p.complexity for p in pareto.front]
        ys = [p.score for p in pareto.front]
        ax.step(xs, ys, where="post", color=CONTROL, linewidth=1.5)
        ax.scatter(xs, ys, s=36, color=CONTROL, zorder=3, label="Pareto front")
        for p in pareto.front:
            ax.annotate(f"#{p.program_id}", (p.complexity, p.score), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    ax.axhline(1.0, color="#616161", linestyle=":", linewidth=1, label="tuned AdamW (1.0)")
    ax.set_title(f"score on {pareto.suite} (stage {pareto.stage}) against complexity")
    ax.set_xlabel("complexity (sum of the op costs)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_ylabel(f"best score on {pareto.suite} (tuned AdamW = 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


# mathtext knows a subset of LaTeX: the few spellings `dsl.to_latex` uses beyond it
_MATHTEXT = {r"\lVert": r"\Vert", r"\rVert": r"\Vert"}


def latex_lines(latex: str) -> list[str]:
    """The rows of an ``aligned`` block, alignment marks removed."""
    body = latex.replace(r"\begin{aligned}", "").replace(r"\end{aligned}", "")
    return [line.replace("&", "").strip() for line in body.split(r"\\") if line.strip()]


def latex_png(latex: str) -> bytes | None:
    """The rule's LaTeX typeset by matplotlib's mathtext (no TeX installation), one row per
    statement; None when mathtext cannot typeset one of them (the page then shows the
    LaTeX text alone)."""
    from matplotlib import mathtext

    lines = latex_lines(latex)
    if not lines:
        return None
    parser = mathtext.MathTextParser("path")
    fontsize = 14
    rows = []
    for line in lines:
        for old, new in _MATHTEXT.items():
            line = line.replace(old, new)
        text = f"${line}$"
        try:
            width, height, _, _, _ = parser.parse(text, dpi=72,
                                                       prop=_font(fontsize))
        except ValueError:
            return None
        rows.append((text, width, height))
    row_height = max(h for _, _, h in rows) + 10
    width = max(w for _, w, _ in rows) + 20
    fig = Figure(figsize=(width / 72, row_height * len(rows) / 72))
    for i, (text, _, _) in enumerate(rows):
        fig.text(10 / width, 1 - (i + 0.5) / len(rows), text, fontsize=fontsize,
                 va="center", ha="left")
    return _png(fig)


def _font(size: float):
    from matplotlib.font_manager import FontProperties

    return FontProperties(size=size)
