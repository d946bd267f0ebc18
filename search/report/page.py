"""The report as one self-contained HTML page: a pure function of `ReportData` and the PNGs.

Self-contained means it opens offline and alone: pictures are embedded as ``data:`` URLs,
the style sheet is inline, there is no script, and a Content-Security-Policy forbids
loading anything else (so a browser refuses, and reports, whatever might try). Every piece
of text from the database (campaign and program names, sources, task names, errors,
rejection reasons) goes through `html.escape`. Every score printed names its suite, in the
cell or in its column's header.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..commands.validate_cmd import COMPARATOR_LABELS
from ..stages import STAGE_VALIDATION
from .data import STAGE_NAMES, CampaignSeries, LineageStep, ReportData, ScoreOn, Winner

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #212121; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { border-bottom: 1px solid #cfd8dc; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.meta { color: #546e7a; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #cfd8dc; padding: 0.25rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #eceff1; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f5f7f8; border: 1px solid #e0e0e0; padding: 0.6rem; overflow-x: auto;
      font-size: 0.85rem; }
.diff .add { color: #1b5e20; background: #e8f5e9; display: block; }
.diff .del { color: #b71c1c; background: #ffebee; display: block; }
.diff .hunk { color: #6a1b9a; display: block; }
.diff .file { color: #546e7a; display: block; }
.diff .same { display: block; }
.step { border-left: 3px solid #90caf9; padding-left: 0.8rem; margin: 1rem 0; }
.note { color: #546e7a; font-style: italic; }
.summary td:first-child { font-weight: 600; }
img { max-width: 100%; height: auto; }
"""


def e(text: Any) -> str:
    """Text for the page: escaped, quotes included."""
    return html.escape(str(text), quote=True)


def num(x: float | None, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


def scored(score: float | None, suite: str, stage: int | None = None) -> str:
    """``1.052 on medium (stage 2)``: a score with its suite, escaped."""
    where = f" ({STAGE_NAMES.get(stage, f'stage {stage}')})" if stage is not None else ""
    return e(f"{num(score)} on {suite}{where}")


def seconds(x: float | None) -> str:
    if x is None:
        return "-"
    if x < 120:
        return f"{x:.1f} s"
    if x < 7200:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.2f} h"


def when(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M:%S UTC")


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{e(alt)}">'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]],
          numeric: Sequence[int] = ()) -> str:
    """`headers` are escaped here; cells must already be HTML (escape them with `e`)."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(data: ReportData, images: Mapping[str, bytes | None]) -> str:
    """The page. `images`: PNG bytes by name (``progress``, ``pareto``, ``latex``), None
    for a picture that could not be drawn."""
    c = data.campaign
    title = f"optforge report: campaign {c.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head><body>",
        f"<h1>{e(title)}</h1>",
        (f'<p class="meta">campaign id {c.id} &middot; status {e(c.status)} &middot; '
         f"strategy {e(data.strategy)} &middot; created {e(when(c.created_at))} &middot; "
         f"database {e(data.database)} &middot; report generated "
         f"{e(when(data.generated_at))}</p>"),
        ('<p class="meta">Scores are tuned AdamW\'s final loss over the rule\'s, geometric '
         "mean over a suite's tasks: tuned AdamW scores 1.000 on every suite, higher is "
         "better. Scores of different suites are not comparable; each names its suite.</p>"),
        _summary(data),
        _progress(data, images.get("progress")),
        _pareto(data, images.get("pareto")),
        _winner(data, images.get("latex")),
        _lineage(data),
        _statistics(data),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# ---- sections ----------------------------------------------------------------------------------

def _summary(data: ReportData) -> str:
    w = data.winner
    rows = []
    if w is None:
        rows.append(["winner", "none: no program of this campaign has a score yet"])
    else:
        rows.append(["winner", f"#{w.program.id} {e(w.program.name)}"])
        rows.append([f"score where winners are chosen ({STAGE_NAMES[w.stage]})",
                     scored(w.score, w.suite, w.stage)])
        v = w.validation
        rows.append(["held-out validation",
                     scored(v["score"], v["suite"], STAGE_VALIDATION) if v else
                     "not validated"])
    control = data.control
    rows.append(["random-search control",
                 f"campaign {e(control.name)} (id {control.campaign_id})" if control else
                 ("this campaign is a random search" if data.strategy == "random" else
                  "none in this database (a campaign with evolution.strategy = "
                  "&quot;random&quot; and the same stage-1 suite)")])
    body = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<h2 id="summary">Summary</h2><table class="summary"><tbody>{body}</tbody></table>'


def _series_rows(series: CampaignSeries, label: str) -> list[list[str]]:
    return [[label, e(STAGE_NAMES[s.stage]), e(s.suite), str(len(s.scores)),
             str(sum(x is None for x in s.scores)), scored(s.best, s.suite)]
            for s in series.stages]


def _progress(data: ReportData, png: bytes | None) -> str:
    out = ['<h2 id="progress">Best score against evaluations</h2>']
    if not data.progress.stages:
        out.append('<p class="note">No stage-1 or stage-2 evaluations yet.</p>')
        return "\n".join(out)
    control = data.control
    if control is not None:
        out.append(f"<p>Beside the <strong>random-search control</strong>: campaign "
                   f"{e(control.name)} (id {control.campaign_id}), which mutates a random "
                   f"seed 1 to 8 times with no selection, on the same stage-1 suite. Blue: "
                   f"this campaign; orange: the control.</p>")
        mismatch = [s for s in data.progress.stages if control.stage(s.stage)
                    and control.stage(s.stage).suite != s.suite]
        for s in mismatch:
            out.append(f'<p class="note">The control\'s {e(STAGE_NAMES[s.stage])} ran on '
                       f"{e(control.stage(s.stage).suite)}, not {e(s.suite)}: not "
                       "plotted beside this campaign's.</p>")
    elif data.strategy == "random":
        out.append('<p class="note">This campaign is itself a random-search control.</p>')
    else:
        out.append('<p class="note">No random-search control in this database.</p>')
    if png is not None:
        suites = ", ".join(f"stage {s.stage} on {s.suite}" for s in data.progress.stages)
        out.append(image(png, f"running best score against evaluations ({suites})"))
    rows = _series_rows(data.progress, "this campaign")
    if control is not None:
        rows += _series_rows(control, "random-search control")
    out.append(table(["campaign", "stage", "suite", "evaluations", "failed", "best score"],
                     rows, numeric=(3, 4)))
    return "\n".join(out)


def _pareto(data: ReportData, png: bytes | None) -> str:
    out = ['<h2 id="pareto">Pareto front: score against complexity</h2>']
    p = data.pareto
    if p is None:
        out.append('<p class="note">No scored evaluations yet.</p>')
        return "\n".join(out)
    out.append(f"<p>Each program's best score on {e(p.suite)} ({e(STAGE_NAMES[p.stage])}) "
               f"against its complexity; on the front are the programs that no simpler "
               f"program matches. {len(p.cloud)} programs, {len(p.front)} on the front.</p>")
    if png is not None:
        out.append(image(png, f"Pareto front of score on {p.suite} against complexity"))
    out.append(table(["program", "name", "complexity", f"score on {p.suite}"],
                     [[f"#{q.program_id}", e(q.name), str(q.complexity), e(num(q.score))]
                      for q in p.front], numeric=(2, 3)))
    return "\n".join(out)


def _score_on(s: ScoreOn) -> str:
    from optforge.evaluators import Status

    status = "" if s.status == Status.OK else f" [{s.status}]"
    return scored(s.score, s.suite, s.stage) + e(status)


def _winner(data: ReportData, latex_png: bytes | None) -> str:
    out = ['<h2 id="winner">The winner</h2>']
    w = data.winner
    if w is None:
        out.append('<p class="note">No winner: no program of this campaign has a score '
                   "yet.</p>")
        return "\n".join(out)
    p = w.program
    line = (f"<p>Program #{p.id} <strong>{e(p.name)}</strong>: {p.statements} statements, "
            f"complexity {p.complexity}, structural hash <code>{e(p.structural_hash)}"
            f"</code>. Best on {e(STAGE_NAMES[w.stage])}: {scored(w.score, w.suite)}")
    if w.stage1 is not None:
        line += f"; on stage 1: {_score_on(w.stage1)}"
    out.append(line + ".</p>")
    out.append("<h3>Source</h3>")
    out.append(f"<pre>{e(p.source.rstrip())}</pre>")
    if w.why_no_forms is not None:
        out.append(f'<p class="note">Simplified form and LaTeX unavailable: '
                   f"{e(w.why_no_forms)}</p>")
    else:
        out.append("<h3>Simplified</h3>")
        same = w.simplified.strip() == p.source.strip()
        out.append('<p class="note">Already in its simplest form.</p>' if same else
                   f"<pre>{e(w.simplified.rstrip())}</pre>")
        out.append("<h3>LaTeX (of the simplified rule)</h3>")
        if latex_png is not None:
            out.append(image(latex_png, "the simplified rule, typeset"))
        out.append(f"<pre>{e(w.latex.rstrip())}</pre>")
    out.append(f"<h3>Per-task scores on {e(w.suite)} ({e(STAGE_NAMES[w.stage])})</h3>")
    if w.tasks:
        out.append(table(["task", "status", f"score on {w.suite}", "loss", "best lr"],
                         [[e(t.task), e(t.status), e(num(t.score)), e(num(t.loss, ".4g")),
                           e(num(t.best_lr, ".3g"))] for t in w.tasks], numeric=(2, 3, 4)))
    else:
        out.append('<p class="note">No per-task results stored.</p>')
    out.append(_validation(w))
    if data.other_validations:
        rows = [[f"#{v.program_id}", e(v.name), e(v.status),
                 scored(v.score, v.suite, STAGE_VALIDATION)] for v in data.other_validations]
        out.append("<p>Other finalists validated by this campaign:</p>")
        out.append(table(["program", "name", "status", "score"], rows))
    return "\n".join(out)


def _validation(w: Winner) -> str:
    v = w.validation
    if v is None:
        return ("<h3>Held-out validation</h3><p><strong>not validated</strong>: the campaign "
                "stored no held-out validation (stage 3) of this program. "
                f"<code>optforge validate {w.program.id}</code> trains it on the validation "
                "suite beside tuned AdamW, Lion and SGD with momentum.</p>")
    suite = v["suite"]
    names = list(COMPARATOR_LABELS)
    out = [f"<h3>Held-out validation on {e(suite)}</h3>",
           f"<p>Evaluation {w.validation_evaluation}: status {e(v['status'])}"
           + (f", suite version {e(v['version'])}" if v.get("version") else "")
           + ". Never selected on. Each comparator is tuned the same way; AdamW scores "
           "1.000 on every task by construction.</p>"]
    rows = []
    for task, t in v["tasks"].items():
        comps = t.get("comparators") or {}
        rows.append([e(task), e(num(t["score"]))]
                    + [e(num((comps.get(n) or {}).get("score"))) for n in names]
                    + [e(t["status"])])
    out.append(table(["task", f"this rule on {suite}"]
                     + [f"{COMPARATOR_LABELS[n]} on {suite}" for n in names] + ["status"],
                     rows, numeric=tuple(range(1, 2 + len(names)))))
    rows = [[f"{e(w.program.name)} (this rule)", scored(v["score"], suite)]]
    rows += [[e(COMPARATOR_LABELS.get(n, n)), scored(s, suite)]
             for n, s in (v.get("comparators") or {}).items()]
    out.append(table(["rule", f"score on {suite} (geometric mean over its tasks)"], rows))
    if v.get("error"):
        out.append(f'<p class="note">error: {e(v["error"])}</p>')
    return "\n".join(out)


def _diff(lines: Sequence[str]) -> str:
    out = []
    for line in lines:
        if line.startswith(("+++", "---")):
            cls = "file"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = "same"
        # one block per line: the lines' own newlines would double the spacing
        out.append(f'<span class="{cls}">{e(line) or " "}</span>')
    return '<pre class="diff">' + "".join(out) + "</pre>"


def _step(i: int, step: LineageStep) -> str:
    scores = "; ".join(_score_on(s) for s in step.scores) or "no stage-1 or stage-2 score"
    if step.mutation is None:
        head = (f"<p><strong>{i}. seed #{step.program_id} {e(step.name)}</strong> "
                f"&middot; {scores}</p>")
        body = f"<pre>{e(step.source.rstrip())}</pre>"
    else:
        head = (f"<p><strong>{i}. #{step.program_id} {e(step.name)}</strong>, by mutation "
                f"<code>{e(step.mutation)}</code> &middot; {scores}</p>")
        body = _diff(step.diff) if step.diff else \
            '<p class="note">Same source text as its parent.</p>'
    return f'<div class="step">{head}{body}</div>'


def _lineage(data: ReportData) -> str:
    out = ['<h2 id="lineage">The winner\'s lineage from its seed</h2>']
    if not data.lineage:
        out.append('<p class="note">No winner, so no lineage.</p>')
        return "\n".join(out)
    out.append(f"<p>{len(data.lineage) - 1} mutation"
               f"{'' if len(data.lineage) == 2 else 's'} from the seed to the winner "
               "(sources shown without their docstrings). Each "
               "step names the mutation that made it from its parent, the source diff and the program's best score on each stage of this campaign.</p>")
    out += [_step(i, step) for i, step in enumerate(data.lineage)]
    return "\n".join(out)


def _statistics(data: ReportData) -> str:
    s = data.stats
    out = ['<h2 id="statistics">Campaign statistics</h2>']
    total = sum(n for _, n in s.by_status)
    out.append("<h3>Evaluations per stage</h3>")
    if s.stages:
        out.append(table(
            ["stage", "suite", "evaluations", "by status", "training time"],
            [[e(f"{x.stage} ({STAGE_NAMES.get(x.stage, '?')})"), e(x.suite),
              str(x.evaluations), e(", ".join(f"{k} {n}" for k, n in x.by_status)),
              e(seconds(x.wall_time))] for x in s.stages], numeric=(2,)))
    else:
        out.append('<p class="note">No evaluations yet.</p>')
    out.append("<h3>Failures by status</h3>")
    from optforge.evaluators import Status

    failed = [(k, n) for k, n in s.by_status if k != Status.OK]
    out.append(table(["status", "evaluations"], [[e(k), str(n)] for k, n in failed],
                     numeric=(1,)) if failed else
               f"<p>None: all {total} evaluations ended ok.</p>")
    if s.errors:
        out.append("<p>Most frequent errors (first line):</p>")
        out.append(table(["error", "evaluations"], [[e(k), str(n)] for k, n in s.errors],
                         numeric=(1,)))
    out.append("<h3>The search</h3>")
    if s.counters:
        out.append(table(["counter", "value"],
                         [[e(k), e(v)] for k, v in s.counters],
                         numeric=(1,)))
    else:
        out.append('<p class="note">No checkpoint: the search\'s counters are unknown.</p>')
    out.append("<h3>Cache hits</h3>")
    out.append(table(["cache", "hits"], [[e(k), e(n)] for k, n in s.cache_hits],
                     numeric=(1,)) if s.cache_hits else '<p class="note">None recorded.</p>')
    out.append("<h3>Rejections by reason</h3>")
    out.append(table(["reason", "children"], [[e(k), e(n)] for k, n in s.rejections],
                     numeric=(1,)) if s.rejections else '<p class="note">None recorded.</p>')
    out.append("<h3>Time</h3>")
    out.append(table(["what", "time"], [
        ["wall time (created to finished, or to the latest evaluation)",
         e(seconds(s.elapsed_seconds))],
        ["training time (summed over evaluations; workers run in parallel)",
         e(seconds(s.training_seconds))],
        ["first evaluation", e(when(s.first_evaluation_at))],
        ["last evaluation", e(when(s.last_evaluation_at))]]))
    return "\n".join(out)
