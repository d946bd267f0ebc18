"""`optforge config` prints the default campaign, and `optforge run --help` states its
defaults, both from the one embedded configuration."""

from __future__ import annotations

import pytest
from optforge.search.cli import main
from optforge.search.config import default_config, load_config


def test_config_prints_the_default_campaign_annotated(tmp_path, capsys):
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# optforge campaign configuration.")
    copy = tmp_path / "copy.toml"
    copy.write_text(text)
    assert load_config(copy) == default_config()


def test_run_help_states_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    d = default_config()
    for phrase in (f"(default {d.budget})", f"(default {d.funnel.stage1})",
                   f"(default {d.funnel.stage2})", f"(default {d.seed})",
                   "default 0: one per core", "about 6 minutes on a 2-core CPU machine",
                   "`optforge config` prints it"):
        assert phrase in help_text, phrase
