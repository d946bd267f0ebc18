"""`optforge report`: a real campaign (and its random-search control) on the `tiny` suite as
one self-contained HTML page; its content, its escaping of hostile text, its one-line
errors, its atomic write, and the page in a real headless Chromium (every image loads, the
console stays clean)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from optforge.search import cli
from optforge.search.engine import Campaign
from optforge.store import ProgramData, Store, TaskResultRecord

from optforge import dsl

from .test_campaign import CONFIG  # the tiny campaign: `tiny` everywhere, budget 7

# the random-search control: same stage-1 suite, smaller, no screening, not validated
CONTROL = replace(CONFIG, budget=4, evolution=replace(CONFIG.evolution, strategy="random"),
                  funnel=replace(CONFIG.funnel, screen=""),
                  validation=replace(CONFIG.validation, enabled=False))

HOSTILE_NAME = '<script>alert("name")</script>&amp;'
HOSTILE_SOURCE = '''def hostile(w, g, lr, t):
    """</pre><img src=x onerror=alert(1)><script>alert("doc")</script>"""
    return lr * tanh(g) * 0.125
'''
HOSTILE_ERROR = '<script>alert("error")</script>'
HOSTILE_CAMPAIGN = '<i>camp</i> & "quotes"'


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    """A database holding the campaign `evo` and, created after it, its control `rand`."""
    path = tmp_path_factory.mktemp("report") / "report.db"
    threads = torch.get_num_threads()
    try:
        with Store(f"sqlite:///{path}") as store:
            Campaign.create(store, CONFIG, "evo").run(workers=1)
            Campaign.create(store, CONTROL, "rand").run(workers=1)
    finally:
        torch.set_num_threads(threads)
    return f"sqlite:///{path}"


@pytest.fixture
def optforge(capsys):
    """Run `optforge ARGS...` in this process; returns (exit status, stdout, stderr)."""
    def run(*argv):
        try:
            status = cli.main(list(argv))
        except SystemExit as e:  # argparse
            status = e.code
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return status, out, err
    return run


@pytest.fixture(scope="module")
def evo_page(db, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pages") / "evo.html"
    assert cli.main(["report", "evo", "--out", str(out), "--db", db]) == 0
    return out


@pytest.fixture(scope="module")
def hostile_db(db, tmp_path_factory) -> str:
    """A copy of `db` where `evo`'s stage-2 winner is a program with a hostile name and
    docstring (a child of the real winner), one of its evaluations failed with a hostile
    error, and an empty campaign has a hostile name."""
    path = tmp_path_factory.mktemp("hostile") / "hostile.db"
    shutil.copy(db.removeprefix("sqlite:///"), path)
    url = f"sqlite:///{path}"
    with Store(url) as store:
        evo = store.get_campaign("evo")
        parent = store.top(1, campaign=evo.id, suite="tiny", stage=2)[0].program
        data = replace(ProgramData.from_program(dsl.parse(HOSTILE_SOURCE)), name=HOSTILE_NAME)
        program = store.add_program(data)
        store.add_lineage(program.id, parent.id, "insert", campaign=evo.id)
        task = TaskResultRecord(task="quadratic", status="ok", score=3.5, loss=0.01,
                                best_lr=0.01)
        for stage in (1, 2):
            store.add_evaluation(program.id, campaign=evo.id, suite="tiny", stage=stage,
                                 status="ok", score=3.5, tasks=[task])
        store.add_evaluation(program.id, campaign=evo.id, suite="tiny", stage=1,
                             status="error", score=None, error=HOSTILE_ERROR + "\nmore")
        store.create_campaign(HOSTILE_CAMPAIGN, {}, status="paused")
    return url


def images(page: str) -> list[str]:
    return re.findall(r"<img\b[^>]*>", page)


# ---- the page ---------------------------------------------------------------------------------

def test_the_report_shows_every_section_with_suites_named(evo_page, db):
    page = evo_page.read_text(encoding="utf-8")
    with Store(db, create=False) as store:
        evo = store.get_campaign("evo")
        rand = store.get_campaign("rand")
        winner = store.top(1, campaign=evo.id, suite="tiny", stage=2)[0]
        validation = store.evaluations(campaign=evo.id, stage=3)[0]
    for section in ("summary", "progress", "pareto", "winner", "lineage", "statistics"):
        assert f'<h2 id="{section}">' in page
    assert "<title>optforge report: campaign evo</title>" in page
    # the random-search control, labelled, beside the campaign
    assert f"random-search control</strong>: campaign rand (id {rand.id})" in page
    assert "<td>random-search control</td><td>stage 1</td><td>tiny</td>" in page
    # the winner, its score where winners are chosen, its stage-1 score, both with suite
    assert f"#{winner.program.id} {winner.program.name}" in page
    assert f"{winner.score:.3f} on tiny (stage 2)" in page
    assert " on tiny (stage 1)" in page
    assert "<h3>Per-task scores on tiny (stage 2)</h3>" in page
    # validation beside AdamW, Lion and SGD with momentum, from the stored stage 3
    assert "<h3>Held-out validation on tiny</h3>" in page
    assert f"{validation.score:.3f} on tiny (held-out validation)" in page
    for rival in ("AdamW", "Lion", "SGD with momentum"):
        assert f"<th>{rival} on tiny</th>" in page
        assert re.search(rf"<td>{rival}</td><td>\d\.\d{{3}} on tiny</td>", page)
    assert "not validated" not in page
    # simplified source and LaTeX as text
    assert "<h3>Simplified</h3>" in page or "Already in its simplest form" in page
    assert r"\begin{aligned}" in page
    # the lineage from the seed: a seed first, then mutations with diffs and scores
    assert "0. seed #" in page and "sgd_momentum" in page
    assert "by mutation <code>" in page and '<pre class="diff">' in page
    # statistics
    for heading in ("Evaluations per stage", "Failures by status", "Cache hits",
                    "Rejections by reason", "Time"):
        assert f"<h3>{heading}</h3>" in page
    assert "0 (screening)" in page and "3 (held-out validation)" in page
    # every score in a cell names its suite in its header or in the cell itself
    for header in re.findall(r"<th>([^<]*score[^<]*)</th>", page):
        assert " on " in header or header in ("best score", "score"), header


def test_the_page_is_self_contained(evo_page):
    page = evo_page.read_text(encoding="utf-8")
    imgs = images(page)
    assert len(imgs) == 3  # progress, Pareto front, the typeset rule
    for img in imgs:
        src = re.search(r'src="([^"]*)"', img).group(1)
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        assert 'alt="' in img
    assert re.search(r'<meta http-equiv="Content-Security-Policy" content="default-src '
                     r"&#x27;none&#x27;; img-src data:;", page)
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_the_default_campaign_is_the_latest_and_a_control_is_labelled(db, optforge,
                                                                      tmp_path):
    out = tmp_path / "latest.html"
    status, stdout, err = optforge("report", "--out", str(out), "--db", db)
    assert status == 0, err
    assert stdout.startswith(f"wrote {out} (") and "campaign rand" in stdout
    assert "on tiny (stage 2)" in stdout
    page = out.read_text(encoding="utf-8")
    assert "<title>optforge report: campaign rand</title>" in page
    assert "strategy random" in page
    assert "This campaign is itself a random-search control." in page
    assert "<strong>not validated</strong>" in page  # the control stores no stage 3


def test_hostile_text_is_escaped(hostile_db, optforge, tmp_path):
    out = tmp_path / "hostile.html"
    status, _, err = optforge("report", "evo", "--out", str(out), "--db", hostile_db)
    assert status == 0, err
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;&amp;amp;" in page
    assert "&lt;/pre&gt;&lt;img src=x onerror=alert(1)&gt;" in page  # its docstring
    assert "<td>&lt;script&gt;alert(&quot;error&quot;)&lt;/script&gt;</td><td class=\"num\">1</td>" \
        in page  # the failures' first lines
    assert "3.500 on tiny (stage 2)" in page  # it is the winner now
    assert len(images(page)) == 3
    # a campaign with a hostile name and nothing evaluated yet
    status, _, err = optforge("report", HOSTILE_CAMPAIGN, "--out", str(out), "--db",
                              hostile_db)
    assert status == 0, err
    page = out.read_text(encoding="utf-8")
    assert "campaign &lt;i&gt;camp&lt;/i&gt; &amp; &quot;quotes&quot;" in page
    assert "<i>camp" not in page
    assert "No stage-1 or stage-2 evaluations yet." in page and len(images(page)) == 0


# ---- errors and the file -------------------------------------------------------------------

def test_an_unknown_campaign_is_one_line_naming_the_database(db, optforge, tmp_path):
    out = tmp_path / "r.html"
    status, _, err = optforge("report", "nope", "--out", str(out), "--db", db)
    assert status == 1
    assert err == f"optforge report: error: no campaign named 'nope' in {db}\n"
    status, _, err = optforge("report", "999", "--out", str(out), "--db", db)
    assert err == f"optforge report: error: no campaign with id 999 in {db}\n"
    assert not out.exists()


def test_an_out_directory_that_does_not_exist_is_one_line(db, optforge, tmp_path):
    out = tmp_path / "missing" / "r.html"
    status, _, err = optforge("report", "--out", str(out), "--db", db)
    assert status == 1
    assert err == (f"optforge report: error: cannot write {out}: directory "
                   f"{out.parent} does not exist\n")
    status, _, err = optforge("report", "--out", str(tmp_path), "--db", db)
    assert status == 1 and err.count("\n") == 1 and "is a directory" in err


def test_an_empty_or_missing_database_is_one_line(optforge, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url).close()  # the tables, no campaign
    out = tmp_path / "r.html"
    status, _, err = optforge("report", "--out", str(out), "--db", url)
    assert status == 1
    assert err.startswith(f"optforge report: error: no campaigns in {url}")
    assert err.count("\n") == 1
    status, _, err = optforge("report", "--out", str(out), "--db",
                              f"sqlite:///{tmp_path / 'none.db'}")
    assert status == 1 and err.count("\n") == 1 and "no optforge database at" in err
    assert not (tmp_path / "none.db").exists() and not out.exists()


def test_the_page_is_written_atomically_with_normal_permissions(db, optforge, tmp_path):
    out = tmp_path / "r.html"
    umask = os.umask(0o022)
    try:
        status, _, err = optforge("report", "evo", "--out", str(out), "--db", db)
    finally:
        os.umask(umask)
    assert status == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary left
    out.chmod(0o600)  # rewriting keeps the file's own mode, as `open(out, "w")` would
    inode = out.stat().st_ino
    status, _, err = optforge("report", "evo", "--out", str(out), "--db", db)
    assert status == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.stat().st_ino != inode  # replaced by a rename, never written in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


# ---- in a real browser ---------------------------------------------------------------------

def _chromium():
    """A headless Chromium under Selenium; skipped locally when either is missing, a
    failure under CI (`.ci/run` installs Debian's chromium and chromium-driver)."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    missing = [what for what, ok in (("chromium", browser), ("chromedriver", driver_path),
                                     ("selenium", webdriver)) if not ok]
    if missing:
        reason = (f"{', '.join(missing)} not installed (apt-get install chromium "
                  "chromium-driver; pip install -e '.[test]')")
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the browser test: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _chromium()
    try:
        yield driver
    finally:
        driver.quit()


def browser_problems(driver, page: Path) -> list[str]:
    """What is wrong with `page` in the browser: images that did not load, and the
    console's errors (a refused load, a Content-Security-Policy violation, a script
    error)."""
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(page.as_uri())
    problems = [f"image {i} ({alt!r}) did not load" for i, (complete, width, alt) in
                enumerate(driver.execute_script(
                    "return Array.from(document.images, "
                    "i => [i.complete, i.naturalWidth, i.alt]);"))
                if not complete or width == 0]
    problems += [f"console {entry['level']}: {entry['message']}"
                 for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    return problems


def test_every_image_loads_and_the_console_is_clean_in_chromium(browser, evo_page,
                                                                hostile_db, tmp_path):
    assert browser.execute_script("return document.images.length;") == 0  # about:blank
    assert browser_problems(browser, evo_page) == []
    assert browser.execute_script("return document.images.length;") == 3
    assert browser.title == "optforge report: campaign evo"
    hostile = tmp_path / "hostile.html"
    assert cli.main(["report", "evo", "--out", str(hostile), "--db", hostile_db]) == 0
    assert browser_problems(browser, hostile) == []
    assert HOSTILE_NAME in browser.find_element("css selector", "#summary + table").text


def test_the_browser_check_sees_a_broken_image_and_a_console_error(browser, evo_page,
                                                                   tmp_path):
    """The check above is not vacuous: the same page with one broken image, or with a
    script (refused by the page's policy, which the console reports), fails it."""
    page = evo_page.read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace("</h1>", '</h1><img src="data:image/png;base64,AAAA" '
                                            'alt="broken">'), encoding="utf-8")
    problems = browser_problems(browser, broken)
    assert len(problems) == 1 and "('broken') did not load" in problems[0]
    scripted = tmp_path / "scripted.html"
    scripted.write_text(page.replace("</h1>", "</h1><script>document.title = 'x';</script>"),
                        encoding="utf-8")
    problems = browser_problems(browser, scripted)
    assert problems and all(p.startswith("console SEVERE") for p in problems)
    assert "Content Security Policy" in " ".join(problems)
