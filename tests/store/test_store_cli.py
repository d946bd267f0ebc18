"""`optforge campaigns / top / show / lineage` as a user runs them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import optforge.search.cli
import pytest
from optforge.store import Store, TaskResultRecord
from storetest_helpers import REPO, tasks

from optforge import dsl, search

MODULE = "optforge.search.commands.store_cmds"

ADAMW = '''def adamw(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """AdamW."""
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * w), m, v
'''
CHILD = '''def child(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    u = m / sqrt(m * m)
    return lr * (u + weight_decay * w), m, v
'''
GRANDCHILD = '''def grandchild(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=0.01):
    m = interp(g, m, beta1)
    return lr * (sign(m) + weight_decay * w), m, v
'''


@pytest.fixture(autouse=True)
def store_commands(monkeypatch):
    """Register the store's subcommands whether or not `search.cli` lists them yet."""
    if MODULE not in search.cli.COMMAND_MODULES:
        monkeypatch.setattr(search.cli, "COMMAND_MODULES",
                            search.cli.COMMAND_MODULES + (MODULE,))


@pytest.fixture
def db(tmp_path: Path) -> dict:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with Store(url) as st:
        camp = st.create_campaign("lion-hunt", {"seed": 7})
        st.create_campaign("empty", {})
        adamw, child, grand = (st.add_program(dsl.parse(s)) for s in (ADAMW, CHILD, GRANDCHILD))
        st.add_lineage(child.id, adamw.id, "insert", campaign=camp.id)
        st.add_lineage(grand.id, child.id, "delete", campaign=camp.id)
        st.add_evaluation(adamw.id, campaign=camp.id, suite="small", status="ok", score=1.0,
                          tasks=tasks(1.0), best_lr=1e-3, wall_time=3.0)
        st.add_evaluation(child.id, campaign=camp.id, suite="small", status="ok", score=1.2,
                          tasks=tasks(1.2), best_lr=3e-4, wall_time=2.0)
        st.add_evaluation(grand.id, campaign=camp.id, suite="small", status="diverged",
                          score=math.nan, wall_time=1.0,
                          tasks=[TaskResultRecord("quad", "diverged", math.nan)])
        st.add_evaluation(child.id, campaign=camp.id, suite="medium", stage=2, status="ok",
                          score=1.1, tasks=tasks(1.1))
    return {"url": url, "path": tmp_path / "runs.db", "ids": (adamw.id, child.id, grand.id)}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = search.cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_campaigns_table_and_json(db, capsys):
    code, out, err = run(capsys, "campaigns", "--db", db["url"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["id", "name", "status"]
    # evaluations (stages 1 and 2), screenings, validations, programs
    assert lines[1].split()[:7] == ["1", "lion-hunt", "running", "4", "0", "0", "3"]
    assert lines[2].split()[:7] == ["2", "empty", "running", "0", "0", "0", "0"]
    # the best is stage 2's, where winners are chosen (not stage 1's higher 1.2)
    assert "1.1 on medium (stage 2)" in lines[1] and lines[2].split()[7:9] == ["-", "-"]
    code, out, _ = run(capsys, "campaigns", "--db", db["url"], "--json")
    data = json.loads(out)
    assert [c["name"] for c in data] == ["lion-hunt", "empty"]
    assert data[0]["best"] == {"score": 1.1, "suite": "medium", "stage": 2,
                               "program": db["ids"][1], "name": "child", "evaluation": 4}
    assert data[1]["best"] is None
    assert data[0]["validation"] == {"score": None, "suite": None}
    assert data[0]["config"] == {"seed": 7}
    assert data[0]["by_status"] == {"diverged": 1, "ok": 3}


def test_campaigns_best_is_never_a_screening_or_a_validation(db, capsys):
    with Store(db["url"]) as st:
        child = db["ids"][1]
        st.add_evaluation(child, campaign=1, suite="tiny", stage=0, status="ok", score=3.0,
                          tasks=tasks(3.0))
        st.add_evaluation(child, campaign=1, suite="validation", stage=3, status="ok",
                          score=2.5, tasks=tasks(2.5))
    code, out, _ = run(capsys, "campaigns", "--db", db["url"], "--json")
    data = json.loads(out)[0]
    assert (data["best"]["score"], data["best"]["suite"], data["best"]["stage"]) == \
        (1.1, "medium", 2)
    assert data["validation"] == {"score": 2.5, "suite": "validation"}
    # and neither counts as one of the campaign's evaluations: each is counted apart
    assert (data["evaluations"], data["screenings"], data["validations"]) == (4, 1, 1)
    code, out, _ = run(capsys, "campaigns", "--db", db["url"])
    assert "1.1 on medium (stage 2)" in out and "2.5 on validation" in out


def test_db_from_environment(db, capsys, monkeypatch):
    monkeypatch.setenv("OPTFORGE_DB", db["url"])
    code, out, _ = run(capsys, "campaigns", "--json")
    assert code == 0 and len(json.loads(out)) == 2


def test_top_defaults_to_where_winners_are_chosen(db, capsys):
    code, out, err = run(capsys, "top", "--db", db["url"])
    assert code == 0, err
    assert out.splitlines()[0].startswith(
        "top 1 in all campaigns on medium, stage 2 (where winners are chosen)")
    code, out, _ = run(capsys, "top", "--db", db["url"], "--suite", "small", "-n", "5",
                       "--campaign", "lion-hunt")
    rows = [line.split() for line in out.splitlines()[2:]]
    adamw, child, _ = db["ids"]
    # NaN never ranks; best first.
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("1", str(child), "child", "1.2"), ("2", str(adamw), "adamw", "1")]


def test_top_json_spells_non_finite_scores(db, capsys):
    code, out, _ = run(capsys, "top", "--db", db["url"], "--suite", "small", "--json")
    data = json.loads(out)
    assert [d["rank"] for d in data] == [1, 2]
    assert data[0]["program"]["name"] == "child"
    assert data[0]["evaluation"]["tasks"]["task0"]["score"] == 1.2
    with Store(db["url"]) as st:
        p = st.add_program(dsl.parse(GRANDCHILD.replace("grandchild", "g2")
                                     .replace("sign(m)", "sign(g)")))
        st.add_evaluation(p.id, suite="small", status="ok", score=math.inf)
    code, out, _ = run(capsys, "top", "--db", db["url"], "--suite", "small", "--json")
    assert json.loads(out)[0]["score"] == "Infinity"


def test_top_on_empty_scope(db, capsys):
    code, out, err = run(capsys, "top", "--db", db["url"], "--campaign", "empty")
    assert code == 0 and out == "" and "no scored evaluations in campaign empty" in err
    code, out, _ = run(capsys, "top", "--db", db["url"], "--campaign", "empty", "--json")
    assert json.loads(out) == []


def test_show(db, capsys):
    adamw, child, grand = db["ids"]
    code, out, err = run(capsys, "show", str(child), "--db", db["url"])
    assert code == 0, err
    assert out.startswith(f"program {child}: child\n")
    assert "u = m / sqrt(m * m)" in out  # stored source
    simplified = out.split("simplified:\n")[1].split("\n\nLaTeX:")[0]
    assert "sign(m)" in simplified  # m / sqrt(m*m) -> sign(m), from dsl.simplify
    assert "\\operatorname{interp}" in out.split("LaTeX:\n")[1]
    assert f"    {adamw} adamw --insert--> in campaign 1" in out
    assert f"children: {grand}" in out
    # the decisive evaluation: stage 2, where the campaign chooses winners
    assert out.splitlines()[1].startswith("  score: 1.1 on medium (stage 2, evaluation 4: ")
    assert "per-task scores (evaluation 4, suite medium, stage 2):" in out
    assert "task1" in out.split("per-task scores")[1]

    code, out, _ = run(capsys, "show", str(grand), "--db", db["url"], "--json")
    data = json.loads(out)
    assert data["program"]["name"] == "grandchild"
    assert data["evaluations"][0]["score"] == "NaN"
    assert data["parents"] == [{"id": child, "name": "child", "mutation": "delete",
                                "campaign_id": 1}]
    assert data["latex"] and data["simplified_source"].startswith("def grandchild(")


def test_validations_are_shown_apart_and_never_ranked_on(db, capsys):
    """A campaign's held-out validation (stage 3, `search.stages`): `top` does not rank on
    it by default, `show` prints it under its own heading, not as the program's scores."""
    adamw, child, _ = db["ids"]
    comparators = {"adamw": {"score": 1.0, "loss": 0.5, "best_lr": 1e-3, "status": "ok"},
                   "lion": {"score": 0.8, "loss": 0.6, "best_lr": 1e-4, "status": "ok"}}
    with Store(db["url"]) as st:
        for _ in range(3):  # more evaluations than any other stage
            st.add_evaluation(child, campaign=1, suite="validation", stage=3, status="ok",
                              score=3.0, tasks=[TaskResultRecord(
                                  "task0", "ok", 3.0, 0.2, 1e-3,
                                  metrics={"seed_scores": [2.5, 3.5], "comparators": comparators,
                                           "suite_version": "abc"})])
    code, out, err = run(capsys, "top", "--db", db["url"])
    assert code == 0, err
    assert out.splitlines()[0].startswith("top 1 in all campaigns on medium, stage 2")
    code, out, err = run(capsys, "show", str(child), "--db", db["url"])
    assert code == 0, err
    assert "per-task scores (evaluation 4, suite medium, stage 2):" in out
    assert "3 (validation)" in out
    held_out = out.split("held-out validation (evaluation 5, campaign 1): ok")[1]
    assert "suite validation (version abc; held out: never selected on)" in held_out
    row = next(line for line in held_out.splitlines() if line.startswith("task0 "))
    assert row.split() == ["task0", "3.000", "0.800", "-", "0.2", "0.001", "2.500-3.500", "ok"]
    assert "score on validation (geometric mean over 1 task)" in held_out
    code, out, _ = run(capsys, "show", str(child), "--db", db["url"], "--json")
    validations = json.loads(out)["validations"]
    assert [v["evaluation"] for v in validations] == [5, 6, 7]
    assert validations[0]["comparators"] == {"adamw": 1.0, "lion": 0.8}
    assert validations[0]["tasks"]["task0"]["seed_spread"] == [2.5, 3.5]


def test_show_by_hash_prefix(db, capsys):
    with Store(db["url"], create=False) as st:
        h = st.get_program(db["ids"][0]).structural_hash
    code, out, _ = run(capsys, "show", h[:8], "--db", db["url"])
    assert code == 0 and out.startswith(f"program {db['ids'][0]}: adamw")


@pytest.mark.parametrize("suffix", [".png", ".dot", ".graphml", ".svg"])
def test_lineage_files(db, capsys, tmp_path: Path, suffix: str):
    adamw, child, grand = db["ids"]
    out_file = tmp_path / f"lineage{suffix}"
    code, out, err = run(capsys, "lineage", str(grand), "--out", str(out_file),
                         "--db", db["url"])
    assert code == 0, err
    assert out.strip() == f"wrote {out_file} (3 programs, 2 edges)"
    data = out_file.read_bytes()
    if suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    elif suffix == ".svg":
        assert b"<svg" in data[:2000]
    elif suffix == ".dot":
        text = data.decode()
        assert text.startswith("digraph lineage {")
        assert f'{adamw} -> {child} [label="insert"];' in text
        assert f'{child} -> {grand} [label="delete"];' in text
    else:
        import networkx as nx

        ET.fromstring(data)  # well-formed XML
        g = nx.read_graphml(out_file)
        assert set(g.nodes) == {str(adamw), str(child), str(grand)}
        assert g.nodes[str(adamw)]["name"] == "adamw"
        assert g.nodes[str(adamw)]["seed"] is True
        assert g.edges[str(child), str(grand)]["mutation"] == "delete"


def test_lineage_with_descendants(db, capsys, tmp_path: Path):
    out_file = tmp_path / "down.dot"
    code, out, _ = run(capsys, "lineage", str(db["ids"][0]), "--descendants", "--out",
                       str(out_file), "--db", db["url"])
    assert code == 0 and "(3 programs, 2 edges)" in out


@pytest.mark.parametrize("argv, message", [
    (["show", "999"], "error: no program with id 999"),
    (["show", "zzz"], "error: 'zzz' is neither a program id nor a structural hash prefix"),
    (["top", "--campaign", "nope"], "error: no campaign named 'nope'"),
    (["lineage", "1", "--out", "graph.jpg"], "must end in one of .png"),
    (["lineage", "1", "--out", "no/such/dir/g.png"], "directory no/such/dir does not exist"),
    (["show", "1", "--campaign", "77"], "error: no campaign"),
])
def test_user_mistakes_are_one_line_errors(db, capsys, argv, message):
    code, out, err = run(capsys, *argv, "--db", db["url"])
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_database_is_an_error_and_creates_nothing(tmp_path: Path, capsys,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTFORGE_DB", raising=False)
    for argv in (["campaigns"], ["top"], ["show", "1"],
                 ["lineage", "1", "--out", "x.png"],
                 ["campaigns", "--db", "sqlite:///elsewhere.db"]):
        code, out, err = run(capsys, *argv)
        assert code == 1
        assert "error: no optforge database at" in err
        assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_newer_schema_via_cli(db, capsys):
    import sqlite3

    with sqlite3.connect(db["path"]) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'abc999'")
    code, _, err = run(capsys, "top", "--db", db["url"])
    assert code == 1
    assert "schema revision 'abc999'" in err and "newer optforge" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_url_via_cli(capsys):
    code, _, err = run(capsys, "campaigns", "--db", "nosuch://host/db")
    assert code == 1 and "error: cannot use nosuch://host/db" in err
    assert len(err.strip().splitlines()) == 1


def test_real_process_prints_no_traceback(tmp_path: Path):
    """The installed entry point, run as a process: a missing database is one line."""
    code = ("import sys\nimport optforge.search.cli as c\n"
            f"if {MODULE!r} not in c.COMMAND_MODULES: c.COMMAND_MODULES += ({MODULE!r},)\n"
            "sys.exit(c.main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("OPTFORGE_DB", None)
    proc = subprocess.run([sys.executable, "-c", code, "show", "3"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("optforge show: error: no optforge database at ")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
