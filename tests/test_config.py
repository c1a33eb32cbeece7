import pytest

from slam.config import SlamConfig, load_config, parse_int_list
from slam.errors import ConfigError


def test_defaults_are_the_paper_recipe():
    cfg = SlamConfig()
    assert cfg.train.roles == ["up", "down"] and cfg.train.lr == 2e-5 and cfg.train.zero_stage == 2
    assert cfg.probe.top_k == 6


def test_yaml_lists_only_changes_and_overrides_apply(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 1.0e-4\n  layers: 0-3\n")
    cfg = load_config(f, ["train.micro_batch_size=8", "probe.langs=en,de"])
    assert cfg.train.lr == 1e-4 and cfg.train.layers == [0, 1, 2, 3]
    assert cfg.train.micro_batch_size == 8 and cfg.probe.langs == ["en", "de"]
    assert cfg.train.epochs == 4.0  # untouched default


def test_every_problem_in_one_message(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lrr: 1\n  engine: jax\n  micro_batch_size: two\nprobee: {}\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    for part in ["train.lrr: unknown key", "train.engine: 'jax' is not one of", "micro_batch_size: expected an integer",
                 "probee: unknown key"]:
        assert part in msg
    assert "\n" not in msg


def test_an_eval_section_says_where_evaluation_is_set(tmp_path):
    """The training config has no evaluation settings; a user's `eval:` section must not be silently ignored."""
    f = tmp_path / "c.yaml"
    f.write_text("eval:\n  limit: 5\n")
    with pytest.raises(ConfigError, match=r"eval: evaluation is not set in this config: use `slam evaluate` flags"):
        load_config(f)


def test_semantic_checks():
    with pytest.raises(ConfigError, match="train.lr: must be > 0.*probe.fire_fraction"):
        load_config(None, ["train.lr=-1", "probe.fire_fraction=2"])
    with pytest.raises(ConfigError, match="train.val_every: must be >= 0.*train.val_accuracy_every: must be >= 0"):
        load_config(None, ["train.val_every=-2", "train.val_accuracy_every=-1"])
    load_config(None, ["train.val_every=0", "train.val_accuracy_every=0", "train.checkpoint_every=0"])


@pytest.mark.parametrize("text,expected", [("0-5", [0, 1, 2, 3, 4, 5]), ("0,2,4", [0, 2, 4]),
                                           ("0-2,7", [0, 1, 2, 7]), ("[1, 3]", [1, 3])])
def test_parse_int_list(text, expected):
    assert parse_int_list(text) == expected


def test_missing_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "b.yaml").write_text("train: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "b.yaml")


def test_typed_cli_values_reach_the_config_as_typed_values(tmp_path, capsys):
    """Regression: `slam runs compare --experiment 2024` rebuilt an override string from the parsed flag, YAML
    read 2024 as an int, and the command failed with "expected a string" instead of looking the name up."""
    from slam.cli import main

    rc = main(["runs", "compare", "--experiment", "2024", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err
    assert rc == 2 and "no MLflow experiment named '2024'" in err and "expected a string" not in err
