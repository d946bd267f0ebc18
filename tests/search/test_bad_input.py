"""Bad input to `optforge run` (and its siblings) is a one-line error before anything is
written: no database file, no campaign row, no worker process. Covers the seed, the other
configuration values a TOML file or a flag can set, files that are not TOML, and worker
counts this machine cannot take (with a fake core count and memory: these tests never
depend on the machine they run on)."""

from __future__ import annotations

import traceback
from pathlib import Path

import optforge.search.cli
import pytest
from optforge.evaluators import pool as pool_module
from optforge.search.config import default_config, load_config
from optforge.search.errors import UserError
from optforge.store import Store

from optforge import search

# Were validation to let one of these through, the campaign would be over in seconds.
CHEAP = ["--budget", "1", "--suite", "tiny", "--stage2", "tiny", "--no-validation",
         "--no-progress"]


def cli(capsys, argv: list[str]) -> tuple[int | None, str]:
    """`optforge ARGV` in this process: (exit status, stderr); a traceback comes back as
    status None."""
    capsys.readouterr()
    try:
        code = search.cli.main(argv)
    except BaseException:  # noqa: BLE001 - what a user would have seen
        return None, capsys.readouterr().err + traceback.format_exc()
    return code, capsys.readouterr().err


def assert_one_line_error(code, err: str, command: str, *fragments: str) -> None:
    assert code not in (None, 0), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"optforge {command}: error: "), err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def existing_db(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    with Store(f"sqlite:///{path}") as st:
        st.create_campaign("earlier", {})
    return path


def campaign_names(path: Path) -> list[str]:
    with Store(f"sqlite:///{path}", create=False) as st:
        return [c.name for c in st.campaigns()]


# ---- the seed ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["-1", str(2**63), str(2**70)])
def test_a_bad_seed_creates_no_database(tmp_path, capsys, machine, seed):
    db = tmp_path / "new.db"
    code, err = cli(capsys, ["run", *CHEAP, "--workers", "1", "--seed", seed,
                             "--db", str(db)])
    assert_one_line_error(code, err, "run", "seed must be an integer from 0 to 2**63-1")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_seed_leaves_no_campaign_row(existing_db, capsys, machine):
    """The seed used to be checked by numpy after the campaign's row was written: the row
    stayed `running`, could not be resumed, and blocked its name."""
    before = existing_db.read_bytes()
    code, err = cli(capsys, ["run", *CHEAP, "--workers", "1", "--seed", "-1", "--name",
                             "negative", "--db", str(existing_db)])
    assert_one_line_error(code, err, "run", "seed")
    assert campaign_names(existing_db) == ["earlier"]
    assert existing_db.read_bytes() == before


def test_the_largest_seed_is_accepted():
    assert default_config().with_overrides(seed=2**63 - 1).seed == 2**63 - 1


# ---- configuration files -----------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("seed = -3\n", "seed must be an integer from 0 to 2**63-1, not -3"),
    ("[funnel]\nthreshold = nan\n", "funnel.threshold must be a finite number"),
    ("[funnel]\nthreshold = inf\n", "funnel.threshold must be a finite number"),
    ("[simplify]\ntolerance = -0.5\n", "simplify.tolerance must be >= 0"),
    ("[simplify]\ntolerance = nan\n", "simplify.tolerance must be a finite number"),
    ("[mutations]\ninsert = inf\n", "mutations.insert must be a finite number"),
    ("[mutations]\ninsert = nan\n", "mutations.insert must be a finite number"),
    ("budget = 9223372036854775808\n", "budget = 9223372036854775808 is out of range"),
    ('name = ""\n', "name must be 1 to 200 characters"),
    ('name = " padded"\n', "name must be 1 to 200 characters"),
    ('name = "1234"\n', "name cannot be all digits"),
    (f'name = "{"x" * 201}"\n', "name must be 1 to 200 characters"),
    ("seeds = [1]\n", "'seeds' must be a list of seed names"),
    ('seeds = ["adamw", ""]\n', "'seeds' must be a list of seed names"),
    ('[funnel]\nstage1 = "huge"\n', "funnel.stage1 is 'huge' (it must be one of tiny, small, medium)"),
    ('[funnel]\nstage2 = "enormous"\n', "funnel.stage2 is 'enormous' (it must be one of tiny, small, medium)"),
    ('[funnel]\nstage1 = "smal"\n', "funnel.stage1 is 'smal'; did you mean 'small'? (it must be"),
    ('[funnel]\nstage2 = "validation"\n',
     "funnel.stage2 is 'validation'; a held-out suite, never selected on (it must be one of"),
    ("budget = \n", "not valid TOML"),
    ("seed = 'zero'\n", "'seed' must be a int"),
])
def test_bad_values_are_one_line_errors(tmp_path, text, message):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(f).with_overrides()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_is_not_utf8(tmp_path, capsys, machine):
    f = tmp_path / "latin1.toml"
    f.write_bytes('budget = 3\nname = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.toml: not valid TOML: line 2 is not "
                                        r"UTF-8 text \(byte 0xe9\)"):
        load_config(f)
    code, err = cli(capsys, ["run", str(f), *CHEAP, "--db", str(tmp_path / "new.db")])
    assert_one_line_error(code, err, "run", "not UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latin1.toml"]


def test_bad_values_from_flags_create_nothing(tmp_path, capsys, machine):
    # An absent directory: a value let through stops there, not in a campaign of 2**64
    # evaluations.
    db = tmp_path / "absent" / "new.db"
    for argv, message in ((["--name", "  "], "name must be"),
                          (["--name", "42"], "all digits"),
                          (["--budget", str(2**64)], "out of range")):
        code, err = cli(capsys, ["run", *CHEAP, "--workers", "1", *argv, "--db", str(db)])
        assert_one_line_error(code, err, "run", message)
    assert list(tmp_path.iterdir()) == []


# ---- worker counts -----------------------------------------------------------------------

def test_too_many_workers_on_the_command_line(tmp_path, capsys, machine):
    # The database's directory does not exist: code that let the count through would stop
    # there (with another message) rather than start a thousand workers.
    db = tmp_path / "absent" / "runs.db"
    code, err = cli(capsys, ["run", *CHEAP, "--workers", "1000", "--db", str(db)])
    assert_one_line_error(code, err, "run",
                          "--workers 1000 exceeds the 2 cores of this machine")
    code, err = cli(capsys, ["resume", "lion-hunt", "--workers", "3", "--db", str(db)])
    assert_one_line_error(code, err, "resume", "--workers 3 exceeds the 2 cores")
    machine["cores"] = 1
    code, err = cli(capsys, ["run", *CHEAP, "--workers", "2", "--db", str(db)])
    assert_one_line_error(code, err, "run", "--workers 2 exceeds the 1 core of this machine")
    assert list(tmp_path.iterdir()) == []


def test_too_many_workers_in_the_configuration_file(tmp_path, capsys, machine):
    f = tmp_path / "c.toml"
    f.write_text("workers = 3\n")
    db = tmp_path / "absent" / "runs.db"
    code, err = cli(capsys, ["run", str(f), *CHEAP, "--db", str(db)])
    assert_one_line_error(code, err, "run", "workers = 3 exceeds the 2 cores of this machine")
    # the flag overrides the file: the run goes on to the (absent) database's directory
    code, err = cli(capsys, ["run", str(f), *CHEAP, "--workers", "2", "--db", str(db)])
    assert_one_line_error(code, err, "run", "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_workers_that_do_not_fit_in_memory(tmp_path, capsys, machine):
    per_worker = pool_module.WORKER_MEMORY_BYTES
    machine.update(cores=64, memory=2 * per_worker + per_worker // 2)  # room for 2
    db = tmp_path / "absent" / "runs.db"
    code, err = cli(capsys, ["run", *CHEAP, "--workers", "4", "--db", str(db)])
    assert_one_line_error(code, err, "run",
                          f"--workers 4 needs about {4 * per_worker / 2**30:.1f} GB of memory",
                          f"{2.5 * per_worker / 2**30:.1f} GB is available (room for 2)")
    assert pool_module.check_workers(2) is None
    assert list(tmp_path.iterdir()) == []


def test_zero_workers_means_as_many_as_fit(machine):
    assert pool_module.check_workers(0) is None
    assert default_config().with_overrides(workers=0).workers == 0
