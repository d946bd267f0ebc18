"""A campaign's four headline numbers agree wherever they are printed (`search.campaign_view`):
its best (where winners are chosen: stage 2, else stage 1), its evaluation count (stages 1
and 2; screenings and validations apart), the programs `top` ranks (distinct, at the
winners' stage, failures on request) and a program's decisive evaluation in `show`; every
score names its suite, lineage drawings included.

Two databases: one written through the Store API (each stage on its own suite, with the
traps: screenings scoring higher than anything, a failed simplification attempt, a program
re-scored twice) and one real campaign run through `optforge run` with its progress bar."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from optforge.search import campaign_view as view
from optforge.search.cli import main
from optforge.store import Store, TaskResultRecord

from optforge import dsl

SEED = '''def seed(w, g, lr, t, m, beta=0.9):
    m = interp(g, m, beta)
    return lr * m, m
'''


def variant(i: int) -> dsl.Program:
    return dsl.parse(SEED.replace("seed", f"v{i}").replace("0.9", f"0.{10 + i}"))


def tasks(score: float) -> list[TaskResultRecord]:
    return [TaskResultRecord(f"task{j}", "ok", score, loss=1.0 / score, best_lr=1e-3)
            for j in range(2)]


FUNNEL = {"stage1": "small", "stage2": "medium", "screen": "tiny"}


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> dict:
    """Campaign `funnel` (small -> medium) with every trap, and `early` (stage 1 only)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('views') / 'v.db'}"
    with Store(url) as st:
        camp = st.create_campaign("funnel", {"funnel": FUNNEL})
        seed = st.add_program(dsl.parse(SEED))
        p = [seed] + [st.add_program(variant(i)) for i in range(1, 6)]
        for i in range(1, 6):
            st.add_lineage(p[i].id, seed.id if i < 4 else p[1].id,
                           "insert" if i < 4 else "ablation", campaign=camp.id)

        def ev(prog, suite, stage, score, status="ok"):
            return st.add_evaluation(prog.id, campaign=camp.id, suite=suite, stage=stage,
                                     status=status, score=score, tasks=tasks(score))
        for i, x in enumerate(p[:4]):  # screenings score above everything: never the best
            ev(x, "tiny", 0, 3.0 + i)
        ev(p[0], "small", 1, 1.0)
        ev(p[1], "small", 1, 1.5)  # the stage-1 best ...
        ev(p[2], "small", 1, 1.2)
        ev(p[3], "small", 1, 1.1)
        ev(p[1], "medium", 2, 1.05)  # ... is not the stage-2 best
        ev(p[2], "medium", 2, 1.1)
        ev(p[2], "medium", 2, 1.15)  # re-scored: still one row, its best
        ev(p[4], "medium", 2, 0.25, status="diverged")  # a failed simplification attempt
        ev(p[5], "medium", 2, math.nan, status="nan")
        ev(p[2], "validation", 3, 2.0)  # held out: never the best, never counted
        early = st.create_campaign("early", {"funnel": FUNNEL})
        st.add_evaluation(p[3].id, campaign=early.id, suite="tiny", stage=0, status="ok",
                          score=9.0)
        st.add_evaluation(p[3].id, campaign=early.id, suite="small", stage=1, status="ok",
                          score=0.9, tasks=tasks(0.9))
    return {"url": url, "ids": [x.id for x in p], "campaign": camp.id, "early": early.id}


def cli(capsys, *argv: str) -> tuple[str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


# ---- the definitions ------------------------------------------------------------------------

def test_one_best_and_one_count(db):
    with Store(db["url"], create=False) as st:
        p = db["ids"]
        assert view.winners_scope(st, "funnel") == view.Scope("medium", 2, db["campaign"])
        best = view.campaign_best(st, "funnel")
        assert (best.program.id, best.score, best.suite, best.stage) == (p[2], 1.15, "medium", 2)
        assert best.describe() == "1.15 on medium (stage 2)"
        # nothing on stage 2 yet: the best is stage 1's, on its suite
        early = view.campaign_best(st, "early")
        assert (early.program.id, early.score, early.suite, early.stage) == (p[3], 0.9,
                                                                             "small", 1)
        counts = view.evaluation_counts(st.suites(campaign=db["campaign"]))
        assert counts == view.Counts(stage1=4, stage2=5, screenings=4, validations=1)
        assert counts.budgeted == 9
        assert counts.describe() == ("9 evaluations (stage 1: 4, stage 2: 5; not in the "
                                     "budget: 4 screenings, 1 validation)")
        assert view.progress_postfix(st, db["campaign"], "small") == (
            9, "best on medium (stage 2) 1.150")
        assert view.progress_postfix(st, db["early"], "small") == (
            1, "best on small (stage 1) 0.900")


# ---- campaigns -------------------------------------------------------------------------------

def test_campaigns_count_budgeted_evaluations_and_label_the_rest(db, capsys):
    out, _ = cli(capsys, "campaigns", "--db", db["url"])
    header, funnel, early = out.splitlines()[:3]
    assert header.split()[:7] == ["id", "name", "status", "evaluations", "screenings",
                                  "validations", "programs"]
    assert funnel.split()[3:7] == ["9", "4", "1", "6"]
    assert "1.15 on medium (stage 2)" in funnel and "2 on validation" in funnel
    assert early.split()[3:6] == ["1", "1", "0"] and "0.9 on small (stage 1)" in early
    assert "evaluations: stages 1 and 2, what the budget counts" in out
    out, _ = cli(capsys, "campaigns", "--db", db["url"], "--json")
    data = {c["name"]: c for c in json.loads(out)}
    f = data["funnel"]
    assert (f["evaluations"], f["stage1"], f["stage2"], f["screenings"], f["validations"]) \
        == (9, 4, 5, 4, 1)
    assert f["best"] == {"score": 1.15, "suite": "medium", "stage": 2,
                         "program": db["ids"][2], "name": "v2", "evaluation": 11}


# ---- top -------------------------------------------------------------------------------------

def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()[2:]]


def test_top_lists_distinct_programs_where_winners_are_chosen(db, capsys):
    p = db["ids"]
    out, _ = cli(capsys, "top", "--db", db["url"], "--campaign", "funnel")
    assert out.splitlines()[0].startswith(
        "top 2 in campaign funnel on medium, stage 2 (where winners are chosen)")
    assert "score on medium" in out.splitlines()[1]
    # one row per program (v2 was scored twice: its best), no failed attempt
    assert [(r[1], r[3], r[-2]) for r in rows(out)] == [(str(p[2]), "1.15", "ok"),
                                                       (str(p[1]), "1.05", "ok")]
    out, _ = cli(capsys, "top", "--db", db["url"], "--campaign", "funnel", "--failures")
    assert [(r[1], r[-2]) for r in rows(out)] == [(str(p[2]), "ok"), (str(p[1]), "ok"),
                                                  (str(p[4]), "diverged"),
                                                  (str(p[5]), "nan")]
    # all campaigns: the same rule, and the suite said
    out, _ = cli(capsys, "top", "--db", db["url"])
    assert out.splitlines()[0].startswith("top 2 in all campaigns on medium, stage 2 "
                                          "(where winners are chosen)")


def test_top_takes_another_scope_when_asked(db, capsys):
    p = db["ids"]
    out, _ = cli(capsys, "top", "--db", db["url"], "--campaign", "funnel", "--suite", "small")
    assert out.splitlines()[0].startswith("top 4 in campaign funnel on small, stage 1 "
                                          "(as asked)")
    assert [r[1] for r in rows(out)] == [str(p[1]), str(p[2]), str(p[3]), str(p[0])]
    out, _ = cli(capsys, "top", "--db", db["url"], "--campaign", "funnel", "--stage", "0")
    assert out.splitlines()[0].startswith("top 4 in campaign funnel on tiny, stage 0")
    out, _ = cli(capsys, "top", "--db", db["url"], "--campaign", "funnel", "--json")
    data = json.loads(out)
    assert [(d["program"]["id"], d["score"], d["suite"], d["stage"]) for d in data] == [
        (p[2], 1.15, "medium", 2), (p[1], 1.05, "medium", 2)]


def test_the_store_ranking_is_distinct_and_hides_failures(db):
    with Store(db["url"], create=False) as st:
        ranked = st.ranking(10, campaign="funnel", suite="medium", stage=2)
        assert [r.program.id for r in ranked] == [db["ids"][2], db["ids"][1]]
        assert [r.evaluation.score for r in ranked] == [1.15, 1.05]
        every = st.ranking(10, campaign="funnel", suite="medium", stage=2, failures=True)
        assert [r.rank for r in every] == [1, 2, 3, 4]
        assert st.ranking(1, campaign="funnel", suite="medium", stage=2, failures=True)[0] \
            .program.id == db["ids"][2]


# ---- show ------------------------------------------------------------------------------------

def test_show_leads_with_the_decisive_evaluation(db, capsys):
    p = db["ids"]
    out, _ = cli(capsys, "show", str(p[1]), "--db", db["url"])
    assert out.splitlines()[1] == ("  score: 1.05 on medium (stage 2, evaluation 9: where "
                                   "campaign funnel (id 1) chooses its winners)")
    assert "per-task scores (evaluation 9, suite medium, stage 2):" in out
    assert re.search(r"^\*\s+9\s+1\s+medium\s+2\s", out, re.MULTILINE)  # marked in the full list
    assert re.search(r"^\s+6\s+1\s+small\s+1\s", out, re.MULTILINE)  # which is still all there
    # only on stage 1 of a campaign that chose on stage 2: its latest budgeted evaluation
    out, _ = cli(capsys, "show", str(p[3]), "--db", db["url"], "--campaign", "funnel")
    assert out.splitlines()[1].startswith("  score: 1.1 on small (stage 1, evaluation 8: "
                                          "its latest budgeted evaluation")
    out, _ = cli(capsys, "show", str(p[1]), "--db", db["url"], "--suite", "small")
    assert out.splitlines()[1].startswith("  score: 1.5 on small (stage 1, evaluation 6: "
                                          "its best on small, as asked)")
    out, _ = cli(capsys, "show", str(p[4]), "--db", db["url"])
    assert out.splitlines()[1].startswith("  score: 0.25 on medium (stage 2, diverged,")
    out, _ = cli(capsys, "show", str(p[2]), "--db", db["url"], "--json")
    assert json.loads(out)["decisive"] == {
        "evaluation": 11, "score": 1.15, "suite": "medium", "stage": 2, "status": "ok",
        "campaign_id": 1, "why": "where campaign funnel (id 1) chooses its winners"}


# ---- lineage ---------------------------------------------------------------------------------

def test_lineage_scores_name_their_suite_and_every_format_has_a_legend(db, capsys,
                                                                         tmp_path: Path):
    p = db["ids"]
    for suffix in (".dot", ".graphml", ".svg"):
        cli(capsys, "lineage", str(p[4]), "--out", str(tmp_path / f"l{suffix}"),
            "--db", db["url"])
    dot = (tmp_path / "l.dot").read_text()
    assert f'{p[1]} [label="#{p[1]} v1\\nc=' in dot
    assert "1.05 on medium\\n(stage 2)" in dot  # v1's stage-2 score, not its 3.0 screening
    assert "1 on small\\n(stage 1)" in dot  # the seed never reached stage 2
    assert re.search(r'^  label=".*yellow: the program asked about.*score on SUITE',
                     dot, re.MULTILINE)
    import networkx as nx
    g = nx.read_graphml(tmp_path / "l.graphml")
    assert "score on SUITE" in g.graph["legend"]
    assert (g.nodes[str(p[1])]["best_score"], g.nodes[str(p[1])]["score_suite"],
            g.nodes[str(p[1])]["score_stage"]) == (1.05, "medium", 2)
    svg = (tmp_path / "l.svg").read_text()
    ET.fromstring(svg)
    assert "the program asked about" in svg and "on medium" in svg


# ---- a real campaign: run's summary and progress bar say what the listings say --------------

@pytest.fixture(scope="module")
def campaign_run(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("run")
    cfg = tmp / "c.toml"
    cfg.write_text('seeds = ["sgd_momentum"]\nseed = 5\nbudget = 9\n'
                   '[evolution]\npopulation = 4\ntournament = 2\nrestart_after = 50\n'
                   '[funnel]\nstage1 = "tiny"\nstage2 = "tiny"\nthreshold = -10.0\n'
                   'stage2_max = 2\nscreen = "tiny"\nhurdle = 0.5\n'
                   '[simplify]\nmax_ablations = 2\n[validation]\nsuite = "tiny"\n')
    db = f"sqlite:///{tmp / 'run.db'}"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", str(cfg), "--workers", "1", "--db", db, "--name", "real"])
    assert code == 0, err.getvalue()
    return {"db": db, "out": out.getvalue(), "err": err.getvalue()}


def test_the_run_summary_and_the_listings_agree(campaign_run, capsys):
    db = campaign_run["db"]
    out, _ = cli(capsys, "campaigns", "--db", db, "--json")
    (listed,) = json.loads(out)
    best = listed["best"]
    assert best["stage"] == 2 and best["suite"] == "tiny"
    summary = campaign_run["out"]
    # the summary's count is the listing's, with the screenings and validations apart
    assert summary.splitlines()[0].startswith(
        f"campaign 1: finished after {listed['evaluations']} evaluations (stage 1: "
        f"{listed['stage1']}, stage 2: {listed['stage2']}; not in the budget: "
        f"{listed['screenings']} screenings, 1 validation)")
    assert listed["screenings"] > 0
    lines = summary.splitlines()
    first = lines[lines.index("best on tiny (stage 2):") + 1]
    assert first.startswith(f"  #{best['program']} {best['name']}: score on tiny "
                            f"{best['score']:.3f}")
    out, _ = cli(capsys, "top", "--db", db, "-n", "1")
    assert rows(out)[0][1] == str(best["program"])
    with Store(db, create=False) as st:
        from optforge.search.engine import Campaign
        c = Campaign.resume(st, "real")
        assert [r.program.id for r in view.finalists(st, c.id, 3)] == \
            [r.program.id for r in c.finalists(3)]
        from optforge.search.commands.campaign import _print_summary
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            _print_summary(c, c.summary("finished"), as_json=True)
    data = json.loads(printed.getvalue())
    assert data["best"] == best and data["counts"]["evaluations"] == listed["evaluations"]
    assert data["winner"] == best["program"]


def test_the_progress_bar_shows_the_stage_2_best_labelled(campaign_run, capsys):
    db = campaign_run["db"]
    out, _ = cli(capsys, "campaigns", "--db", db, "--json")
    best = json.loads(out)[0]["best"]
    bar = campaign_run["err"].replace("\r", "\n")
    assert "best on tiny (stage 1) " in bar  # stage 1 first, named
    final = [line for line in bar.splitlines() if "best on" in line][-1]
    assert f"best on tiny (stage 2) {best['score']:.3f}" in final
