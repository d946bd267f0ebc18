"""The seed catalogue: what ships, and what each seed says about itself."""

from __future__ import annotations

import importlib
import importlib.util

import pytest
from optforge.dsl.slots import SlotShape
from optforge.seeds import load_seed, rule_metadata, seed_info, seed_names, seed_source
from seed_references import BY_SEED

from optforge import dsl, seeds

# Seeds of whole-model rules (closures, global reductions) are verified over a group of
# parameters in group_references.py, when that module is there.
GROUP_REFERENCES = (importlib.import_module("group_references").GROUP_REFERENCES
                    if importlib.util.find_spec("group_references") else {})

# The optimizers the seeds issue asks for, by seed name.
REQUIRED = {
    "SGD": "sgd", "SGD with momentum": "sgd_momentum", "Nesterov": "nesterov",
    "Adagrad": "adagrad", "RMSprop": "rmsprop", "Adam": "adam", "AdamW": "adamw",
    "Adamax": "adamax", "NAdam": "nadam", "RAdam": "radam", "AMSGrad": "amsgrad",
    "AdaBelief": "adabelief", "AdaBound": "adabound", "diffGrad": "diffgrad",
    "LaProp": "laprop", "Lion": "lion", "signSGD": "signsgd", "Signum": "signum",
    "PowerSign": "powersign", "AddSign": "addsign", "Adan": "adan", "ADOPT": "adopt",
    "LAMB": "lamb", "LARS": "lars", "Adafactor": "adafactor", "Muon": "muon",
}

# The seeds the language-reach issue (#16) asks for, each a verified seed.
REQUIRED_REACH = {
    "SAM": "sam", "AdaHessian": "adahessian", "Sophia-H": "sophia_h", "MARS": "mars",
    "D-Adaptation Adam": "dadapt_adam", "Prodigy": "prodigy", "AdamP": "adamp", "CAME": "came",
    "exact Adafactor": "adafactor", "exact Muon": "muon", "AdaMuon": "adamuon", "AEGD": "aegd",
    "an AutoClip-style rule": "zclip",
}


def test_the_catalogue_has_every_required_optimizer():
    names = set(seed_names())
    assert len(names) >= len(set(REQUIRED.values()))
    missing = {k: v for k, v in REQUIRED.items() if v not in names}
    assert not missing


def test_the_catalogue_has_the_language_reach_seeds():
    missing = {k: v for k, v in REQUIRED_REACH.items() if v not in seed_names()}
    assert not missing


def test_every_seed_is_verified_against_a_reference():
    """A seed without a step-by-step reference test does not ship: one of a tensor at a time
    (seed_references.py) or of a group of parameters (group_references.py), not both."""
    assert not set(BY_SEED) & set(GROUP_REFERENCES)
    assert set(seed_names()) == set(BY_SEED) | set(GROUP_REFERENCES)


def test_exact_adafactor_and_came_keep_factored_state():
    """Sublinear memory: one number per row and one per column of a matrix, not its size."""
    assert load_seed("adafactor").slot_shapes == (("r", SlotShape.ROW), ("c", SlotShape.COL))
    came = load_seed("came")
    assert dict(came.slot_shapes) == {"r": SlotShape.ROW, "c": SlotShape.COL,
                                      "rr": SlotShape.ROW, "rc": SlotShape.COL}
    assert came.slot_shape("m") is SlotShape.FULL


def test_exact_muon_reads_the_shape():
    from optforge.dsl.needs import needs

    assert needs(load_seed("muon")) == {"rows", "cols"}


@pytest.mark.parametrize("name", seed_names())
def test_seed_is_a_clean_program(name):
    program = load_seed(name)
    assert program.name == name
    report = dsl.check(program)
    assert report.ok, [d.format() for d in report.errors]
    assert not report.warnings, [d.format() for d in report.warnings]
    assert dsl.parse(dsl.format_program(program)) == program


@pytest.mark.parametrize("name", seed_names())
def test_seed_docstring_names_paper_year_reference_and_lr(name):
    info = seed_info(name)
    assert info.citation and '"' in info.citation  # a quoted title
    assert info.year is not None and 1950 <= info.year <= 2030
    assert str(info.year) in info.citation
    assert info.reference
    assert info.lr is not None and info.lr > 0
    assert info.metadata.notes  # the form followed, and differences from the paper


def test_adam_metadata():
    info = seed_info("adam")
    assert info.citation.startswith("Adam: Kingma & Ba")
    assert info.year == 2015
    assert info.reference == "torch.optim.Adam"
    assert info.lr == 0.001


def test_year_is_the_publication_year_not_the_preprint_year():
    assert seed_info("adan").year == 2024  # "IEEE TPAMI 2024 (arXiv 2022)"


def test_unknown_seed_is_a_key_error_naming_the_known_ones():
    with pytest.raises(KeyError, match="adamw"):
        seed_source("adamx")
    with pytest.raises(KeyError):
        seed_info("adamx")


def test_metadata_of_a_rule_without_the_layout():
    program = dsl.parse("def r(w, g, lr, t):\n    'A rule.'\n    return lr * g\n")
    meta = rule_metadata(program)
    assert meta.citation == "A rule." and meta.year is None
    assert meta.reference == "" and meta.lr is None and meta.notes == ""
    bare = dsl.parse("def r(w, g, lr, t):\n    return lr * g\n")
    assert rule_metadata(bare) == seeds.RuleMetadata("", None, "", "", None)


def test_metadata_lr_must_be_a_number():
    src = 'def r(w, g, lr, t):\n    """X, "T", 2020.\n\n    lr: fast\n    """\n    return lr * g\n'
    assert rule_metadata(dsl.parse(src)).lr is None
