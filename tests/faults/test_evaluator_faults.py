"""The evaluator fails for reasons that are not a candidate's fault (a baseline that fails
on every replica, workers that cannot start): the run stops with one line that says so and
how to resume, and the campaign stays resumable."""

from __future__ import annotations

import optforge.search.evaluation
from optforge.evaluators.scoring import EvaluationError
from optforge.search.cli import main
from optforge.store import Store

from optforge import search

from .conftest import config_file


def test_a_broken_evaluator_stops_the_run_in_one_line(tmp_path, capsys, monkeypatch):
    db = f"sqlite:///{tmp_path / 'broken.db'}"

    def broken(program, suite, **kw):
        raise EvaluationError("baseline sgd failed on every replica of task quadratic")
    monkeypatch.setattr(search.evaluation, "evaluate", broken)
    code = main(["run", str(config_file(tmp_path)), "--workers", "1", "--name", "broken",
                 "--db", db, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "Traceback" not in "\n".join(err)
    assert err[-1] == ("optforge run: error: cannot evaluate: baseline sgd failed on every "
                       "replica of task quadratic; what was committed is kept (resume with: "
                       f"optforge resume 1 --db '{db}')")
    with Store(db, create=False) as store:
        record = store.get_campaign("broken")
        assert (record.status, record.lease) == ("failed", None)
        assert store.count_evaluations(campaign=record.id) == 0
