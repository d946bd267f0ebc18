"""Mutations produce valid, different children; the registry is what the config names."""

from collections import Counter

import numpy as np
import pytest
from optforge.search.mutations import (
    DEFAULT_WEIGHTS,
    MUTATIONS,
    Limits,
    bypass_statement,
    mutate,
)

from optforge import dsl, seeds


def test_registry_and_default_weights_name_the_same_mutations():
    assert set(MUTATIONS) == set(DEFAULT_WEIGHTS)
    assert {"insert", "delete", "change_op", "change_arg", "perturb_constant",
            "redraw_constant", "add_state", "drop_state"} <= set(MUTATIONS)


@pytest.mark.parametrize("seed_name", ["adamw", "lion", "sgd_momentum"])
def test_children_are_valid_distinct_and_round_trip(seed_name):
    rng = np.random.default_rng(0)
    parent = seeds.load_seed(seed_name)
    kinds = Counter()
    for _ in range(150):
        r = mutate(parent, rng)
        assert r.child is not None
        child = r.child
        kinds[r.kind] += 1
        dsl.ir.validate(child)
        assert dsl.check(child).ok
        assert dsl.structural_hash(child) != dsl.structural_hash(parent)
        assert dsl.parse(dsl.format_program(child)) == child
        assert len(child.state) <= Limits().max_state
    assert len(kinds) >= 6, kinds  # the registry is really used


def test_each_mutation_edits_what_it_says():
    rng = np.random.default_rng(1)
    lion = seeds.load_seed("lion")
    perturbed = MUTATIONS["perturb_constant"](lion, rng, Limits())
    assert perturbed.body == lion.body or perturbed.hyperparams != lion.hyperparams
    assert [s.op for s in perturbed.body] == [s.op for s in lion.body]
    grown = MUTATIONS["insert"](lion, rng, Limits())
    assert len(grown.body) == len(lion.body) + 1
    more_state = MUTATIONS["add_state"](lion, rng, Limits())
    assert len(more_state.state) == 2 and dsl.check(more_state).ok
    assert MUTATIONS["add_state"](more_state, rng, Limits()) is None  # at the limit
    less_state = MUTATIONS["drop_state"](lion, rng, Limits())
    assert less_state.state == ()


def test_bypass_reads_the_chosen_argument():
    p = dsl.parse("def f(w, g, lr, t):\n    a = tanh(g)\n    return lr * a\n")
    q = bypass_statement(p, 0, 0)
    assert dsl.format_program(q) == "def f(w, g, lr, t):\n    return lr * g\n"


def test_mutation_is_a_pure_function_of_the_rng():
    p = seeds.load_seed("adamw")
    a = [mutate(p, np.random.default_rng(7)).child for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_unknown_mutation_weight_is_refused():
    with pytest.raises(ValueError, match="unknown mutation"):
        mutate(seeds.load_seed("lion"), np.random.default_rng(0), {"teleport": 1.0})


def test_rejections_are_counted_by_reason():
    rng = np.random.default_rng(0)
    reasons = Counter()
    for _ in range(100):
        reasons.update(mutate(seeds.load_seed("sgd_momentum"), rng).rejections)
    assert reasons and all(isinstance(k, str) for k in reasons)
