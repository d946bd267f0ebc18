"""Campaign configuration: the embedded default, TOML files, overrides and clear errors."""

import pytest
from optforge.search.config import (
    CampaignConfig,
    config_from_dict,
    default_config,
    load_config,
)
from optforge.search.errors import UserError


def test_embedded_default_is_the_documented_one():
    cfg = default_config()
    assert cfg.seeds == ("adamw",) and cfg.funnel.stage1 == "small"
    assert cfg.evolution.max_state == 2
    assert cfg == load_config(None)


def test_toml_file_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('seeds = ["lion", "sgd_momentum"]\nbudget = 10\n[evolution]\npopulation = 5\n'
                 'tournament = 2\n[mutations]\ninsert = 0\n[funnel]\nthreshold = 1\n')
    cfg = load_config(f)
    assert cfg.seeds == ("lion", "sgd_momentum") and cfg.budget == 10
    assert cfg.evolution.population == 5 and cfg.mutations["insert"] == 0.0
    assert cfg.funnel.threshold == 1.0
    over = cfg.with_overrides(budget=3, seed=None, **{"funnel.stage1": "tiny"})
    assert over.budget == 3 and over.funnel.stage1 == "tiny" and over.seed == cfg.seed
    assert config_from_dict(over.to_dict(), "stored") == over


def test_screening_defaults_and_campaigns_stored_before_it():
    cfg = default_config()
    assert cfg.funnel.screen == "tiny" and cfg.funnel.hurdle == 0.7
    old = cfg.to_dict()
    del old["funnel"]["screen"], old["funnel"]["hurdle"]
    assert config_from_dict(old, "stored").funnel.screen == ""


def test_validation_defaults_and_campaigns_stored_before_it():
    cfg = default_config()
    assert cfg.validation.enabled and cfg.validation.candidates == 1
    assert cfg.validation.suite == "validation"
    assert CampaignConfig().validation == cfg.validation  # a TOML without [validation]
    old = cfg.to_dict()
    del old["validation"]
    assert not config_from_dict(old, "stored").validation.enabled  # resumes as it was made
    assert config_from_dict(cfg.to_dict(), "stored") == cfg
    over = cfg.with_overrides(**{"validation.enabled": False})
    assert not over.validation.enabled


@pytest.mark.parametrize("text,message", [
    ("budgt = 3\n", "unknown key 'budgt'"),
    ("budget = 'many'\n", "'budget' must be a int"),
    ("[evolution]\npopulaton = 3\n", "unknown key 'populaton'"),
    ("[evolution]\npopulation = 1\n", "population >= 2"),
    ("[mutations]\nteleport = 1.0\n", "unknown mutation 'teleport'"),
    ("[mutations]\ninsert = -1\n", "must be a number >= 0"),
    ("budget = \n", "not valid TOML"),
    ("[evolution]\nstrategy = 'annealing'\n", "'evolution' or 'random'"),
    ("[funnel]\nscreen = 'huge'\n", "funnel.screen is 'huge' (it must be one of tiny, small, medium)"),
    ("[funnel]\nhurdle = 1.5\n", "hurdle must be a quantile between 0 and 1"),
    ("[validation]\ncandidates = 0\n", "validation.candidates must be >= 1"),
    ("[validation]\ncandidates = 1.5\n", "'candidates' must be a int"),
    ("[validation]\nsuite = 'heldout'\n", "validation.suite is 'heldout' (it must be one of tiny, small"),
    ("[validation]\nenabled = 'yes'\n", "'enabled' must be a bool"),
    ("[validation]\nwinners = 2\n", "unknown key 'winners'"),
    ("validation = true\n", "[validation] must be a table"),
])
def test_bad_configuration_is_a_one_line_user_error(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(f)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="No such file"):
        load_config(tmp_path / "nope.toml")
    assert isinstance(CampaignConfig(), CampaignConfig)
