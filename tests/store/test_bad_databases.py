"""Databases that are not what they should be: damaged SQLite files, files that are not
SQLite at all, SQLite files of another program, files this process may not write, and
malformed URLs. Every command answers in one line naming the database, exits non-zero
(or, reading a read-only database, simply answers), and leaves the file byte-identical
with nothing beside it (no ``-wal``, ``-shm`` or ``-journal`` file, no campaign row)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import traceback
from pathlib import Path

import optforge.search.cli
import pytest
from optforge.store import Store
from optforge.store.errors import (
    DatabaseDamaged,
    NotAnOptforgeDatabase,
    ReadOnlyDatabase,
)
from storetest_helpers import REPO

from optforge import search, seeds

READERS = (["campaigns"], ["top"], ["show", "1"])
# The cheapest campaign there is: were it to start, it would be over in seconds.
RUN = ["run", "--budget", "1", "--suite", "tiny", "--stage2", "tiny", "--no-validation",
       "--workers", "1", "--no-progress", "--seed", "0", "--name", "probe"]


def cli(capsys, argv: list[str]) -> tuple[int | None, str, str]:
    """`optforge ARGV` in this process: (exit status, stdout, stderr). A traceback, which
    a user would have seen, comes back as exit status None with the traceback as stderr."""
    capsys.readouterr()
    try:
        code = search.cli.main(argv)
    except BaseException:  # noqa: BLE001 - what the user would have seen
        out, err = capsys.readouterr()
        return None, out, err + traceback.format_exc()
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err: str, command: str) -> None:
    assert code not in (None, 0), err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"optforge {command}: error: "), err


def snapshot(directory: Path) -> dict[str, str]:
    """Every file in `directory` and the SHA-256 of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.is_file()}


def make_optforge_db(path: Path) -> None:
    """A real optforge database: a campaign, programs, evaluations; WAL checkpointed into
    the file on close (no -wal file is left)."""
    with Store(f"sqlite:///{path}") as st:
        camp = st.create_campaign("lion-hunt", {"seed": 7})
        for i, name in enumerate(sorted(seeds.seed_names())):
            prog = st.add_program(seeds.load_seed(name))
            st.add_evaluation(prog.id, campaign=camp.id, suite="tiny", status="ok",
                              score=0.5 + i / 100)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def damage_page(path: Path, table: str) -> int:
    """Overwrite the root page of `table` with junk (the header stays valid); returns the
    page number."""
    # immutable: a read-only connection would leave -wal and -shm files behind
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                           (table,)).fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size
    data[start:start + page_size] = b"\xab" * page_size
    path.write_bytes(bytes(data))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    return root


@pytest.fixture
def optforge_db(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    make_optforge_db(path)
    return path


KINDS = ("damaged-evaluations", "damaged-rollback-journal", "damaged-schema", "random-bytes",
         "foreign-sqlite", "truncated")


def bad_files(directory: Path) -> dict[str, Path]:
    """The kinds of bad file a user may point optforge at, each alone in its directory."""
    files = {}
    for kind in KINDS:
        sub = directory / kind
        sub.mkdir()
        path = sub / "runs.db"
        if kind == "damaged-evaluations":  # a page in the middle, read by every command
            make_optforge_db(path)
            damage_page(path, "evaluations")
        elif kind == "damaged-rollback-journal":  # the same, in rollback-journal mode:
            make_optforge_db(path)                # setting WAL mode would change its header
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.close()
            assert path.read_bytes()[18:20] == b"\x01\x01"  # (WAL mode: 2, 2)
            damage_page(path, "evaluations")
        elif kind == "damaged-schema":  # page 1 after its 100-byte header: sqlite_master
            make_optforge_db(path)
            data = bytearray(path.read_bytes())
            data[100:4096] = b"\xab" * (4096 - 100)
            path.write_bytes(bytes(data))
        elif kind == "random-bytes":
            path.write_bytes(random.Random(12).randbytes(20_000))
        elif kind == "foreign-sqlite":
            with sqlite3.connect(path) as conn:
                conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
                conn.execute("INSERT INTO notes (text) VALUES ('mine')")
            conn.close()
        else:  # the first 3 pages of a real database
            make_optforge_db(path)
            path.write_bytes(path.read_bytes()[:3 * 4096])
        files[kind] = path
    return files




@pytest.mark.parametrize("kind", KINDS)
def test_bad_files_get_one_line_errors_and_stay_byte_identical(tmp_path, capsys, kind):
    path = bad_files(tmp_path)[kind]
    before = snapshot(path.parent)
    for argv in (*READERS, RUN):
        code, _, err = cli(capsys, [*argv, "--db", str(path)])
        one_line_error(code, err, argv[0])
        assert "runs.db" in err, err  # it names the file
        assert snapshot(path.parent) == before, f"{argv[0]} changed {path.parent}"


def test_a_damaged_file_says_it_is_damaged(tmp_path, capsys):
    path = bad_files(tmp_path)["damaged-evaluations"]
    code, _, err = cli(capsys, [*RUN, "--db", str(path)])
    assert code == 1 and "is damaged" in err and "Page" in err, err
    code, _, err = cli(capsys, ["campaigns", "--db", str(path)])
    assert code == 1 and "is damaged" in err and "malformed" in err, err


def test_run_leaves_a_damaged_file_in_its_journal_mode(tmp_path, capsys):
    """`run` used to set WAL mode (bytes 18-19 of the header) on the damaged file it then
    refused."""
    path = bad_files(tmp_path)["damaged-rollback-journal"]
    before = path.read_bytes()
    code, _, err = cli(capsys, [*RUN, "--db", str(path)])
    one_line_error(code, err, "run")
    assert path.read_bytes()[18:20] == b"\x01\x01" and path.read_bytes() == before


def test_writers_check_the_pages_before_writing_anything(optforge_db: Path):
    """A damaged page anywhere is found before the first write (PRAGMA quick_check), even
    one no query would read; the file, its header included, is left as it was."""
    damage_page(optforge_db, "lineage")  # an empty table: nothing reads it on the way
    before = snapshot(optforge_db.parent)
    with Store(f"sqlite:///{optforge_db}") as st:
        assert [c.name for c in st.campaigns()] == ["lion-hunt"]  # readers still read
        with pytest.raises(DatabaseDamaged, match="is damaged") as info:
            st.create_campaign("another", {})
    assert "\n" not in str(info.value)
    assert snapshot(optforge_db.parent) == before


def test_the_header_is_checked_before_sqlite_opens_the_file(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello")
    for create in (True, False):
        with pytest.raises(NotAnOptforgeDatabase, match="not an SQLite file"):
            Store(f"sqlite:///{path}", create=create)
    assert snapshot(tmp_path) == {"notes.txt": hashlib.sha256(b"hello").hexdigest()}


# ---- read-only databases -----------------------------------------------------------------

def deny_writes(monkeypatch, *paths: Path) -> None:
    """Make `os.access` answer for `paths` as it does for an unprivileged user when they
    are read-only. (Tests may run as root, whom chmod does not stop; the store decides
    with `os.access`, and `test_read_only_for_real` runs the same commands as an
    unprivileged user with real permissions.)"""
    real = os.access
    denied = {p.resolve() for p in paths}

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve() in denied:
            return False
        return real(path, mode, *args, **kwargs)
    monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("what", ["file", "directory"])
def test_read_only_database_refuses_writers_and_serves_readers(optforge_db, capsys,
                                                               monkeypatch, what):
    deny_writes(monkeypatch, optforge_db if what == "file" else optforge_db.parent)
    before = snapshot(optforge_db.parent)
    code, _, err = cli(capsys, [*RUN, "--db", str(optforge_db)])
    one_line_error(code, err, "run")
    assert f"cannot write to sqlite:///{optforge_db}" in err, err
    assert ("the file is read-only" if what == "file" else "directory") in err, err
    assert snapshot(optforge_db.parent) == before
    # readers read it, and leave nothing behind either
    code, out, err = cli(capsys, ["campaigns", "--db", str(optforge_db)])
    assert code == 0 and "lion-hunt" in out, err
    code, out, err = cli(capsys, ["top", "--db", str(optforge_db)])
    assert code == 0 and out.startswith("top 10 in all campaigns"), err
    assert snapshot(optforge_db.parent) == before


def test_a_new_database_in_a_read_only_directory(tmp_path, capsys, monkeypatch):
    deny_writes(monkeypatch, tmp_path)
    code, _, err = cli(capsys, [*RUN, "--db", str(tmp_path / "new.db")])
    one_line_error(code, err, "run")
    assert "cannot create" in err and "not writable" in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_url(optforge_db, capsys):
    """``mode=ro`` in the URL: read without a trace (SQLite's own read-only connections
    leave -wal and -shm files behind), writes refused up front."""
    url = f"sqlite:///file:{optforge_db}?mode=ro&uri=true"
    before = snapshot(optforge_db.parent)
    code, out, err = cli(capsys, ["campaigns", "--db", url])
    assert code == 0 and "lion-hunt" in out, err
    code, _, err = cli(capsys, [*RUN, "--db", url])
    one_line_error(code, err, "run")
    assert "the URL opens it read-only" in err
    assert snapshot(optforge_db.parent) == before


def test_read_only_store_api(optforge_db, monkeypatch):
    deny_writes(monkeypatch, optforge_db)
    before = snapshot(optforge_db.parent)
    with Store(f"sqlite:///{optforge_db}", create=False) as st:
        assert len(st.top(3, suite="tiny")) == 3
        with pytest.raises(ReadOnlyDatabase, match="cannot write to .*the file is read-only"):
            st.create_campaign("x", {})
    assert snapshot(optforge_db.parent) == before


UNPRIVILEGED = 65534  # "nobody"

_SCRIPT = """
import contextlib, io, json, os, sys
import optforge.search.cli
from optforge import search
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            code = search.cli.main(argv)
        except BaseException as e:
            import traceback
            code, err = None, io.StringIO(traceback.format_exc())
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps({"uid": os.geteuid(), "results": results}))
"""


def _drop_privileges() -> None:
    os.setgroups([])
    os.setgid(UNPRIVILEGED)
    os.setuid(UNPRIVILEGED)


def _unprivileged_python(drop, env: dict, cwd: Path) -> str:
    """An interpreter of this Python version that the unprivileged user may run: this one,
    or (when it lives where that user cannot reach, e.g. under /root) the system's, with
    this environment's packages put on its path."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/python{version}",
                   f"/usr/local/bin/python{version}"):
        try:
            proc = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                                  cwd=cwd, env=env, preexec_fn=drop, capture_output=True,
                                  text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if proc.returncode == 0 and proc.stdout.strip() == str(sys.version_info[:2]):
            return python
    pytest.skip(f"no Python {version} that user {UNPRIVILEGED} may run")


def run_unprivileged(commands: list[list[str]], cwd: Path) -> list[tuple]:
    """Run optforge commands in a process of an unprivileged user (this one if it is not
    root; else "nobody"): (exit status, stdout, stderr) for each."""
    drop = _drop_privileges if os.geteuid() == 0 else None
    path = [str(REPO), sysconfig.get_paths()["purelib"], os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "HOME": str(cwd), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    python = _unprivileged_python(drop, env, cwd)
    proc = subprocess.run([python, "-c", _SCRIPT, json.dumps(commands)], cwd=cwd, env=env,
                          preexec_fn=drop, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["uid"] != 0  # permissions bind it
    return [tuple(r) for r in answer["results"]]


@pytest.fixture
def shared_dir():
    """A directory an unprivileged user can enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="optforge-ro-"))
    path.chmod(0o755)
    yield path
    for p in sorted(path.rglob("*"), reverse=True):
        p.chmod(0o700)
    subprocess.run(["rm", "-rf", str(path)], check=False)


def test_read_only_for_real(shared_dir: Path):
    """The same as the tests above with real permissions: a 0444 file in a writable
    directory, and a database in a 0555 directory, used by an unprivileged user."""
    ro_file = shared_dir / "file"
    ro_file.mkdir()
    make_optforge_db(ro_file / "runs.db")
    (ro_file / "runs.db").chmod(0o444)
    ro_file.chmod(0o777)  # anyone may create files beside it: only the file is read-only
    ro_dir = shared_dir / "dir"
    ro_dir.mkdir()
    make_optforge_db(ro_dir / "runs.db")
    (ro_dir / "runs.db").chmod(0o444)
    ro_dir.chmod(0o555)
    before = {d: snapshot(d) for d in (ro_file, ro_dir)}
    commands = []
    for d in (ro_file, ro_dir):
        db = str(d / "runs.db")
        commands += [["campaigns", "--db", db], ["top", "--db", db], [*RUN, "--db", db]]
    commands.append([*RUN, "--db", str(ro_dir / "new.db")])
    results = run_unprivileged(commands, shared_dir)
    for (argv, (code, out, err)) in zip(commands, results):
        if argv[0] == "run":
            one_line_error(code, err, "run")
            assert "cannot write to" in err or "cannot create" in err, err
        else:
            assert code == 0 and not err, err
            assert ("lion-hunt" if argv[0] == "campaigns" else "top 10") in out
    for d in (ro_file, ro_dir):
        assert snapshot(d) == before[d], f"something was written in {d}"


# ---- malformed URLs ----------------------------------------------------------------------

@pytest.mark.parametrize("url,message", [
    ("postgresql://u@h:notaport/x", "the port 'notaport' is not a number"),
    ("postgresql://u@[::1/x", "is not a number"),
    ("postgresql+psycopg://u@h:99999/x", "port 99999 is not between 1 and 65535"),
    ("postgresql+psycopg://u@h:0/x", "port 0 is not between 1 and 65535"),
    ("://nothing", "not a database URL"),
])
def test_malformed_urls_are_one_line_errors(tmp_path, capsys, monkeypatch, url, message):
    monkeypatch.chdir(tmp_path)
    for argv in (["campaigns"], RUN):
        code, _, err = cli(capsys, [*argv, "--db", url])
        one_line_error(code, err, argv[0])
        assert message in err, err
    assert list(tmp_path.iterdir()) == []
