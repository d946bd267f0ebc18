"""`optforge resume`: bare, it continues the campaign that stopped last; every refusal is
one line that names the database it looked in."""

from __future__ import annotations

import time
from dataclasses import replace

from optforge.search.cli import main
from optforge.search.config import Validation
from optforge.search.engine import Campaign
from optforge.store import Store

from .test_campaign import CONFIG

SHORT = replace(CONFIG, budget=3, validation=Validation(enabled=False, suite="tiny"))


def test_bare_resume_continues_the_campaign_that_stopped_last(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    with Store(db) as store:
        assert main(["resume", "--db", db]) == 1
        assert capsys.readouterr().err.strip() == (
            f"optforge resume: error: no paused, interrupted, failed campaign in {db} "
            "(`optforge campaigns` lists them)")
        older = Campaign.create(store, SHORT, "older")
        time.sleep(0.01)  # distinct update times
        newer = Campaign.create(store, SHORT, "newer")
        assert main(["resume", "--db", db, "--workers", "1", "--no-progress"]) == 0
        assert f"resuming campaign newer (id {newer.id}) in {db}" in capsys.readouterr().err
        assert store.get_campaign("newer").status == "finished"
        assert store.get_campaign("older").status == "paused"
        assert store.count_evaluations(campaign=older.id) == 0
        assert main(["resume", "newer", "--db", db]) == 1
        assert capsys.readouterr().err.strip() == (
            "optforge resume: error: campaign newer has finished; nothing to resume")


def test_an_unknown_campaign_names_the_database_it_looked_in(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    Store(db).close()
    assert main(["resume", "nosuch", "--db", db]) == 1
    assert capsys.readouterr().err.strip() == (
        f"optforge resume: error: no campaign named 'nosuch' in {db}")
    assert main(["resume", "42", "--db", db]) == 1
    assert capsys.readouterr().err.strip() == (
        f"optforge resume: error: no campaign with id 42 in {db}")
