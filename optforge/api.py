"""The Python front door's functions (see the package docstring). Each is a thin layer over
the subpackages, with the errors a caller can act on: `optforge.dsl.RuleError` for a bad rule,
`ValueError` for an unknown seed or suite, `optforge.store.StoreError` for the database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

from . import dsl, seeds


def load_rule(spec: str | os.PathLike) -> dsl.Program:
    """A checked rule: from a rule file (a path, or a name ending in .rule) or a seed name
    (`optforge.seeds.seed_names()`), by the resolver every command uses
    (`optforge.seeds.resolve_rule`, whose docstring states the precedence); `ValueError`
    (`seeds.UnknownRule`) for a name that is neither, `optforge.dsl.RuleError` for a bad or
    missing file."""
    return seeds.load_rule(spec)


def evaluate(rule: dsl.Program | str, suite: str = "small", *, workers: int = 1):
    """The rule's `optforge.evaluators.EvalResult` on `suite`: per-task scores and the suite
    score (tuned AdamW's loss over the rule's, geometric mean; AdamW = 1). `workers` > 1
    trains the tasks on a process pool."""
    from . import evaluators

    program = load_rule(rule) if isinstance(rule, (str, os.PathLike)) else rule
    if suite not in evaluators.SUITES:
        hint = dsl.did_you_mean(suite, evaluators.SUITES)
        raise ValueError(f"unknown suite {suite!r}" + (f"; {hint}" if hint else ""))
    if workers == 1:
        return evaluators.evaluate(program, suite)
    return next(evaluators.evaluate_many([program], suite, workers=workers))


def run_campaign(config: str | os.PathLike | Any | None = None, *, db: str | None = None,
                 name: str | None = None, workers: int | None = None, pool: Any = None,
                 progress: Callable[[Any], None] | None = None,
                 overrides: Mapping[str, Any] | None = None, **top_level: Any) -> dict:
    """Run a search campaign to its end and return its summary (what `optforge run --json`
    prints). `config`: a TOML path, a `optforge.search.config.CampaignConfig`, or None for
    the embedded default; top-level keys as keywords (``budget=20, seed=1``) and sections'
    keys in `overrides` (``{"funnel.stage1": "tiny"}``). `db`: a database URL (default:
    ``$OPTFORGE_DB``, else ``./optforge.db``). `pool`: an evaluator pool to train on (any
    object with `optforge.evaluators.pool.EvaluatorPool`'s interface, e.g. a cluster's),
    left open; by default a local one with `workers` processes. Ctrl-C pauses it;
    `optforge resume` goes on."""
    import time

    from .search.config import CampaignConfig, load_config
    from .search.engine import Campaign
    from .store import Store

    base = config if isinstance(config, CampaignConfig) else load_config(config)
    cfg = base.with_overrides(workers=workers, name=name, **top_level, **dict(overrides or {}))
    campaign_name = cfg.name or f"campaign-{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    with Store(db) as store:
        campaign = Campaign.create(store, cfg, campaign_name, progress=progress)
        return campaign.run(workers=cfg.workers or None, pool=pool)


def export(rule: dsl.Program | str, path: str | os.PathLike | None = None, *,
           class_name: str | None = None) -> str:
    """The source of a standalone module with a torch optimizer applying `rule` (a program,
    a seed name or a rule file); written to `path` (atomically, mode as ``open(path, "w")``)
    when given."""
    from .dsl.export import export_module
    from .search.files import write_text_atomically

    program = load_rule(rule) if isinstance(rule, (str, os.PathLike)) else rule
    source = export_module(program, class_name,
                           provenance=rule if isinstance(rule, str) else program.name)
    if path is not None:
        write_text_atomically(Path(path), source)
    return source


def open_store(url: str | None = None, **kwargs: Any):
    """The results database at `url` (see `optforge.store.Store`); use it as a context
    manager."""
    from .store import Store

    return Store(url, **kwargs)
