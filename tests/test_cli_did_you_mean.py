"""A misspelled seed or suite on the command line gets the closest known name (issue 13)."""

import pytest
from optforge.search.cli import main


@pytest.mark.parametrize("argv, message", [
    (["eval", "lino"], "no rule file or seed named 'lino'; did you mean 'lion'?"),
    (["eval", "adamx"], "did you mean 'adamax'?"),
    (["export", "lino", "--out", "{tmp}/x.py"],
     "'lino' is neither a rule file nor a seed; did you mean 'lion'?"),
    (["validate", "lino"], "'lino' is neither a rule file nor a seed; did you mean 'lion'?"),
])
def test_a_misspelled_seed_gets_a_suggestion(tmp_path, capsys, argv, message):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_name_like_no_seed_still_lists_the_seeds(capsys):
    assert main(["eval", "no_such_seed"]) == 1
    err = capsys.readouterr().err
    assert "no rule file or seed named 'no_such_seed' (seeds: adabelief, " in err
    assert "did you mean" not in err


def test_a_misspelled_suite_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "adamw", "--suite", "smal"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --suite: invalid choice: 'smal'; did you mean 'small'? (choose from " \
           "tiny, small, medium, reference, validation)" in err


def test_a_suite_unlike_any_is_an_invalid_choice(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "adamw", "--suite", "huge"])
    err = capsys.readouterr().err
    assert "invalid choice: 'huge' (choose from " in err and "did you mean" not in err
