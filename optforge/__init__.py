"""optforge: discover neural-network optimizers by program search.

The Python front door (the command line, `optforge`, does the same from a shell):

    import optforge
    rule = optforge.load_rule("lion")                  # a seed name or a .rule file
    result = optforge.evaluate(rule, "tiny")           # its score on a suite (AdamW = 1)
    summary = optforge.run_campaign(budget=20, db="sqlite:///runs.db")   # a search
    source = optforge.export(rule, "my_lion.py")       # a drop-in torch.optim optimizer
    with optforge.open_store("sqlite:///runs.db") as store:
        store.top(5, campaign=summary["campaign"])     # what the campaign found

The parts live in subpackages: `optforge.dsl` (the rule language), `optforge.seeds` (known
optimizers as rules), `optforge.evaluators` (proxy tasks and scoring), `optforge.store` (the
results database), `optforge.search` (the evolutionary search and the command line).
Nothing heavy (torch) is imported until a function needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

# An installed optforge holds its parts inside this package; in a checkout they are the
# repository's top-level folders (dsl/, store/, ...), which the product brief fixes. There
# they import as optforge.<part> too, with or without an (editable) install.
_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "dsl" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))

from .dsl.lazy import lazy_exports  # noqa: E402 - after the path above

_EXPORTS = {name: "api" for name in ("load_rule", "evaluate", "run_campaign", "export",
                                     "open_store")}

if TYPE_CHECKING:
    from .api import evaluate, export, load_rule, open_store, run_campaign

__all__ = ["evaluate", "export", "load_rule", "open_store", "run_campaign"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
