"""Campaign configuration: a frozen value read from TOML with command-line overrides on top.

Every default has one home: the dataclass fields below. `optforge config` prints them as
annotated TOML (`annotated_default`: the comments of `default_campaign.toml`, a template
whose ``{section.key}`` fields are filled from these defaults), and `optforge run --help`
states them from `default_config()`."""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from optforge.dsl.errors import did_you_mean
from optforge.evaluators.tasks import SEARCH_SUITES, SUITES

from .errors import UserError
from .mutation_defaults import DEFAULT_WEIGHTS, Limits

__all__ = ["CampaignConfig", "Search", "Evolution", "Funnel", "Simplify", "Validation",
           "Islands", "CHARGES", "load_config",
           "default_config", "annotated_default", "config_from_dict"]


CHARGES = ("count", "time")


@dataclass(frozen=True)
class Search:
    """How the budget is spent. `charge`: "count" charges every budgeted evaluation 1;
    "time" charges its measured training time in units of the first seed's (AdamW's by
    default) on the same suite (`search.charging`), so that a rule whose step costs two
    passes of the model (`dsl.needs.passes_per_step`) costs about two evaluations."""

    charge: str = "count"


@dataclass(frozen=True)
class Evolution:
    strategy: str = "evolution"  # or "random": the random-search control
    population: int = 24
    tournament: int = 6
    max_state: int = 2
    max_statements: int = 40
    max_tries: int = 50
    restart_after: int = 60


@dataclass(frozen=True)
class Funnel:
    stage1: str = "small"
    stage2: str = "medium"
    threshold: float = 0.9
    stage2_max: int = 4
    screen: str = "tiny"  # "" for none: every probed child is trained on stage 1
    hurdle: float = 0.7  # quantile of the recent children's screening scores to reach


@dataclass(frozen=True)
class Simplify:
    enabled: bool = True
    tolerance: float = 0.02
    max_ablations: int = 4


@dataclass(frozen=True)
class Validation:
    """Held-out validation of the final candidates (`evaluators.validation`): after stage 2
    and the winner's simplification, the best `candidates` programs on stage 2 (1: the
    winner) are trained on `suite` and stored as stage 3. Never selected on; not counted in
    the budget."""

    enabled: bool = True
    candidates: int = 1
    suite: str = "validation"


@dataclass(frozen=True)
class Islands:
    """When several processes run the campaign as islands (`optforge run --island K`,
    `search.islands`): every `migrate_every` stage-1 evaluations an island takes in the
    best `migrants` programs of the others. Unused by a campaign of one process."""

    migrate_every: int = 20
    migrants: int = 2


@dataclass(frozen=True)
class CampaignConfig:
    name: str | None = None
    seeds: tuple[str, ...] = ("adamw",)
    seed: int = 0
    budget: int = 120
    workers: int = 0
    search: Search = Search()
    evolution: Evolution = Evolution()
    mutations: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    funnel: Funnel = Funnel()
    simplify: Simplify = Simplify()
    validation: Validation = Validation()
    islands: Islands = Islands()

    @property
    def limits(self) -> Limits:
        e = self.evolution
        return Limits(max_state=e.max_state, max_statements=e.max_statements,
                      max_tries=e.max_tries)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        d["mutations"] = dict(self.mutations)
        return d

    def with_overrides(self, **overrides: Any) -> "CampaignConfig":
        """Top-level and `section.key` overrides, e.g. ``budget=10, **{"funnel.stage1":
        "tiny"}``; None values are ignored. The result is the configuration a run on this
        machine will use, so its `workers` is checked against this machine's cores and
        memory too (`evaluators.pool.check_workers`): a campaign stored elsewhere still
        resumes (`config_from_dict` does not check), its pool capped to what fits here."""
        top = {k: v for k, v in overrides.items() if v is not None and "." not in k}
        cfg = replace(self, **top)
        for key, value in overrides.items():
            if value is None or "." not in key:
                continue
            section, name = key.split(".", 1)
            cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})
        cfg = _validated(cfg)
        from optforge.evaluators.pool import (
            check_workers,  # imports torch: only when workers > 0
        )

        problem = check_workers(cfg.workers, "workers =")
        if problem:
            raise UserError(f"invalid campaign configuration: {problem}")
        return cfg


def default_config() -> CampaignConfig:
    """The embedded default campaign: every field at its default."""
    return _validated(CampaignConfig())


def annotated_default() -> str:
    """The default campaign as annotated TOML (what `optforge config` prints): the
    template `default_campaign.toml` filled from `default_config()`."""
    from .hurdle import HURDLE_WINDOW

    template = resources.files("optforge.search").joinpath("default_campaign.toml")
    d = default_config()
    text = template.read_text("utf-8").format_map({
        "seeds": _toml(list(d.seeds)), "seed": _toml(d.seed), "budget": _toml(d.budget),
        "workers": _toml(d.workers), "hurdle_window": HURDLE_WINDOW,
        "mutations": _TomlFields(dict(d.mutations)),
        **{name: _TomlFields(asdict(getattr(d, name))) for name in _SECTIONS}})
    # line the comments up again after the values of `key = value  # comment`
    return re.sub(r"^(\w+ = \S+?) +#", lambda m: m.group(1).ljust(22) + " #", text,
                  flags=re.M)


def _toml(value: Any) -> str:
    """A TOML literal for a default (a bool, number, string or list of strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, list)):
        return json.dumps(value)
    return repr(value)


class _TomlFields:
    """``{section.key}`` in the template: the key's default as a TOML literal."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = values

    def __getattr__(self, key: str) -> str:
        return _toml(self._values[key])


def load_config(path: str | Path | None) -> CampaignConfig:
    """The configuration in TOML file `path` (None: the embedded default). Unknown keys and
    wrong types are `UserError`s naming the key."""
    if path is None:
        return default_config()
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserError(f"{path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:  # TOML is UTF-8 text (tomllib would raise this raw)
        line = raw[:e.start].count(b"\n") + 1
        raise UserError(f"{path}: not valid TOML: line {line} is not UTF-8 text "
                        f"(byte 0x{raw[e.start]:02x})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    return _from_mapping(data, str(path))


def config_from_dict(data: Mapping[str, Any], where: str) -> CampaignConfig:
    """A configuration from its `to_dict()` form (as stored with a campaign). A campaign
    stored before screening (validation) existed resumes without it; one stored before a
    mutation existed, without that mutation (weight 0); one stored before `[search]`
    charged by count."""
    data = {k: v for k, v in data.items() if v is not None}
    if isinstance(data.get("mutations"), dict):
        data["mutations"] = {**{name: 0.0 for name in DEFAULT_WEIGHTS}, **data["mutations"]}
    if isinstance(data.get("funnel"), dict) and "screen" not in data["funnel"]:
        data["funnel"] = {**data["funnel"], "screen": ""}
    if "validation" not in data:
        data["validation"] = {"enabled": False}
    return _from_mapping(data, where)


_SECTIONS = {"search": Search, "evolution": Evolution, "funnel": Funnel, "simplify": Simplify,
             "validation": Validation, "islands": Islands}
_TOP = {"name": (str,), "seeds": (list,), "seed": (int,), "budget": (int,), "workers": (int,)}


def _from_mapping(data: Mapping[str, Any], where: str) -> CampaignConfig:
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS:
            kwargs[key] = _section(_SECTIONS[key], value, f"{where}: [{key}]")
        elif key == "mutations":
            if not isinstance(value, dict):
                raise UserError(f"{where}: [mutations] must be a table of weights")
            unknown = set(value) - set(DEFAULT_WEIGHTS)
            if unknown:
                raise UserError(f"{where}: unknown mutation '{sorted(unknown)[0]}' in "
                                f"[mutations]; known: {', '.join(sorted(DEFAULT_WEIGHTS))}")
            weights = dict(DEFAULT_WEIGHTS)
            for name, w in value.items():
                if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
                    raise UserError(f"{where}: [mutations] {name} must be a number >= 0")
                weights[name] = float(w)
            kwargs["mutations"] = weights
        elif key in _TOP:
            if not isinstance(value, _TOP[key]) or isinstance(value, bool):
                raise UserError(f"{where}: '{key}' must be a {_TOP[key][0].__name__}")
            if key == "seeds":
                if not all(isinstance(s, str) and s for s in value):
                    raise UserError(f"{where}: 'seeds' must be a list of seed names or "
                                    ".rule files (strings)")
                value = tuple(value)
            kwargs[key] = value
        else:
            raise UserError(f"{where}: unknown key '{key}'")
    return _validated(CampaignConfig(**kwargs))


def _section(cls, value: Any, where: str):
    if not isinstance(value, dict):
        raise UserError(f"{where} must be a table")
    known = {f.name: f for f in fields(cls)}
    out = {}
    for key, v in value.items():
        if key not in known:
            raise UserError(f"{where}: unknown key '{key}'; known: {', '.join(known)}")
        kind = type(getattr(cls(), key))
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (kind is not bool and isinstance(v, bool)):
            raise UserError(f"{where}: '{key}' must be a {kind.__name__}")
        out[key] = v
    return cls(**out)


# Integers are stored (as JSON) with the campaign, and the seed seeds numpy's generator:
# each must fit a signed 64-bit integer, which every database and JSON reader keeps exactly.
_INT_LIMIT = 2**63


def _validated(cfg: CampaignConfig) -> CampaignConfig:
    """Every problem of a configuration at once, as one `UserError` line. Runs before a
    campaign touches the database, so a bad value never leaves a campaign behind."""
    e = cfg.evolution
    problems = []
    for where, value in _numbers(cfg):
        if isinstance(value, int) and not -_INT_LIMIT < value < _INT_LIMIT:
            problems.append(f"{where} = {value} is out of range (|{where}| < 2**63)")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{where} must be a finite number, not {value}")
    if not 0 <= cfg.seed < _INT_LIMIT:
        problems.append(f"seed must be an integer from 0 to 2**63-1, not {cfg.seed}")
    if cfg.name is not None:
        name = cfg.name
        if not name or name != name.strip() or "\n" in name or len(name) > 200:
            problems.append(f"name must be 1 to 200 characters on one line without "
                            f"surrounding spaces (leave it out for a generated one), "
                            f"not {name!r}")
        elif name.isdigit():
            problems.append(f"name cannot be all digits (it would read as an id): {name!r}")
    if cfg.budget < 1:
        problems.append("budget must be >= 1")
    if cfg.workers < 0:
        problems.append("workers must be >= 0 (0: one per core)")
    if not cfg.seeds:
        problems.append("seeds must name at least one seed")
    for stage in ("stage1", "stage2"):
        if getattr(cfg.funnel, stage) not in SEARCH_SUITES:
            problems.append(_unknown_suite(f"funnel.{stage}", getattr(cfg.funnel, stage),
                                           SEARCH_SUITES))
    if cfg.simplify.tolerance < 0:
        problems.append("simplify.tolerance must be >= 0")
    if cfg.search.charge not in CHARGES:
        problems.append(f"search.charge must be \"count\" or \"time\", not "
                        f"{cfg.search.charge!r}")
    if e.strategy not in ("evolution", "random"):
        problems.append("evolution.strategy must be 'evolution' or 'random'")
    if e.population < 2 or not 1 <= e.tournament <= e.population:
        problems.append("need population >= 2 and 1 <= tournament <= population")
    if e.max_state < 0 or e.max_statements < 1 or e.max_tries < 1 or e.restart_after < 1:
        problems.append("max_state >= 0, max_statements, max_tries, restart_after >= 1")
    if not any(w > 0 for w in cfg.mutations.values()):
        problems.append("at least one mutation needs a weight > 0")
    if cfg.funnel.screen not in ("",) + SEARCH_SUITES:
        problems.append(_unknown_suite("funnel.screen", cfg.funnel.screen, SEARCH_SUITES)
                        + ' or "" (none)')
    if not 0.0 <= cfg.funnel.hurdle <= 1.0:
        problems.append("funnel.hurdle must be a quantile between 0 and 1")
    if cfg.funnel.stage2_max < 0 or cfg.simplify.max_ablations < 0:
        problems.append("stage2_max and max_ablations must be >= 0")
    if cfg.islands.migrate_every < 1 or cfg.islands.migrants < 0:
        problems.append("islands.migrate_every must be >= 1 and islands.migrants >= 0")
    if cfg.validation.candidates < 1:
        problems.append("validation.candidates must be >= 1 (1: the winner)")
    if cfg.validation.suite not in SUITES:
        problems.append(_unknown_suite("validation.suite", cfg.validation.suite, SUITES))
    if problems:
        raise UserError("invalid campaign configuration: " + "; ".join(problems))
    return cfg


def _numbers(cfg: CampaignConfig):
    """``(key, value)`` for every number in the configuration, keys as in the TOML."""
    for key in ("budget", "workers"):  # (the seed has its own, narrower, range)
        yield key, getattr(cfg, key)
    for section in _SECTIONS:
        for f in fields(getattr(cfg, section)):
            value = getattr(getattr(cfg, section), f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                yield f"{section}.{f.name}", value
    for name, weight in cfg.mutations.items():
        yield f"mutations.{name}", weight


def _unknown_suite(key: str, value: str, allowed: tuple[str, ...]) -> str:
    """``funnel.stage1 is 'smal'; did you mean 'small'? It must be one of ...``. A campaign
    selects only on SEARCH_SUITES: the held-out suites stay held out."""
    if value in SUITES:
        hint = "a held-out suite, never selected on"
    else:
        hint = did_you_mean(value, allowed)
    return (f"{key} is {value!r}{'; ' + hint if hint else ''} (it must be one of "
            f"{', '.join(allowed)})")
