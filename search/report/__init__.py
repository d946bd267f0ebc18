"""`optforge report`: one campaign as a self-contained HTML page.

    data = gather(store, campaign)        # frozen values read from the store (data.py)
    html = build_page(data)               # plots (plots.py) embedded in the page (page.py)

The page shows the best score against evaluations on each stage beside the random-search
control, the Pareto front of score against complexity, the winner (source, simplified
source, LaTeX, per-task scores, held-out validation beside AdamW, Lion and SGD with
momentum), its lineage from its seed with each mutation's source diff, and the campaign's
statistics. Every score names its suite.
"""

from __future__ import annotations

from .data import ReportData, gather
from .page import render
from .plots import latex_png, pareto_png, progress_png

__all__ = ["ReportData", "build_page", "gather"]


def build_page(data: ReportData) -> str:
    """The HTML page for `data`, with its pictures drawn and embedded."""
    images = {
        "progress": progress_png(data.progress, data.control),
        "pareto": pareto_png(data.pareto) if data.pareto is not None else None,
        "latex": latex_png(data.winner.latex)
        if data.winner is not None and data.winner.latex else None,
    }
    return render(data, images)
