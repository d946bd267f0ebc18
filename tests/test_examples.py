"""examples/train_with_exported.py trains a model with an exported optimizer, end to end:
a seed it exports itself, and a program exported from a database by `optforge export ID`."""

import re
import subprocess
import sys
from pathlib import Path

from optforge.search.cli import main
from optforge.store import Store

from optforge import dsl

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "train_with_exported.py"

# the default campaign's winner (README: "A first campaign, end to end")
WINNER = ("def c509(w, g, lr, t, m, v, beta1=0.9, beta2=0.9984, eps=3.034e-08, "
          "weight_decay=0.01):\n"
          "    m = interp(g, m, beta1)\n"
          "    v = interp(g * g, v, beta2)\n"
          "    return lr * (m / (1.0 - beta1 ** t) / (sqrt(v / arctan(1.0 - beta2 ** t)) + eps)),"
          " m, v\n")


def train(*args: str, cwd: Path) -> tuple[str, list[float]]:
    """Run the example; returns its first line and the losses it printed, checking the shape
    of its output."""
    done = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "60", "--every", "20", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"\w+ from .+\.py, peak lr \S+", lines[0]), lines[0]
    losses = [float(m.group(1)) for line in lines if (m := re.fullmatch(r"step +\d+  loss (\S+)",
                                                                        line))]
    assert [line.split()[1] for line in lines if line.startswith("step ")] == \
        ["0", "20", "40", "60"]
    assert re.fullmatch(r"accuracy on the 297 held-out digits: [01]\.\d{3}", lines[-1]), lines[-1]
    return lines[0], losses


def test_the_example_exports_the_lion_seed_itself_and_its_loss_decreases(tmp_path):
    header, losses = train("--lr", "1e-3", cwd=tmp_path)  # Lion's own 1e-4 is slow here
    assert header.startswith("Lion from ") and header.endswith("lion_opt.py, peak lr 0.001")
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.8 * losses[0], losses
    exported = Path(header.removeprefix("Lion from ").split(", peak lr")[0])
    assert not exported.exists() and not list(tmp_path.iterdir())  # it cleaned up


def test_the_example_trains_with_a_stored_program_exported_by_id(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'optforge.db'}"
    with Store(db) as store:
        camp = store.create_campaign("docs", {}, status="finished")
        record = store.add_program(dsl.parse(WINNER))
        store.add_evaluation(record.id, campaign=camp.id, suite="medium", status="ok",
                             score=1.252, stage=2, best_lr=0.0193)
    out = tmp_path / "my_opt.py"
    assert main(["export", str(record.id), "--db", db, "--out", str(out)]) == 0
    assert "class C509" in capsys.readouterr().out
    header, losses = train(str(out), cwd=tmp_path)  # its default lr: the campaign's 0.0193
    assert header == f"C509 from {out}, peak lr 0.0193"
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.2 * losses[0], losses
