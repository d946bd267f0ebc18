"""The command line's listings answer without importing torch (about a second on a CPU
machine; `bench/cli_startup.py` measures the figures), and `--version` says which optforge."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from optforge.store import Store

from optforge import seeds

PROBE = """
import sys
from optforge.search.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("TORCH-LOADED" if "torch" in sys.modules else "TORCH-NOT-LOADED", file=sys.stderr)
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('startup') / 's.db'}"
    with Store(url) as store:
        camp = store.create_campaign("listing", status="paused")
        record = store.add_program(seeds.load_seed("adamw"))
        store.add_evaluation(record.id, campaign=camp.id, suite="small", stage=1, status="ok",
                             score=1.0, key="k")
    return url, record.id


@pytest.mark.parametrize("command", ["--help", "--version", "campaigns", "top", "lineage",
                                     "config", "run --help", "resume --help"])
def test_listings_do_not_import_torch(command, db, tmp_path):
    url, program = db
    argv = command.split()
    if command in ("campaigns", "top"):
        argv += ["--db", url]
    if command == "lineage":
        argv += [str(program), "--out", str(tmp_path / "l.dot"), "--db", url]
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert done.stderr.strip().splitlines()[-1] == "TORCH-NOT-LOADED", done.stderr


def test_version(capsys):
    from importlib.metadata import version

    from optforge.search.cli import main
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"optforge {version('optforge')}"
