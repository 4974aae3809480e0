"""Typed config: defaults, YAML, overrides, and one clear error for bad input."""

from pathlib import Path

import pytest

from irat.config import Config, ConfigError, from_dict, load


def test_defaults_validate_and_overrides_are_typed(tmp_path):
    cfg = load(
        None,
        ["--train.epochs=3", "--attack.eps=0.2", "--train.progress=false", "--eval.attacks=clean,pgd-20"],
    )
    assert cfg.train.epochs == 3 and cfg.attack.eps == 0.2 and cfg.train.progress is False
    assert cfg.eval.attacks == ["clean", "pgd-20"]
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  method: trades\n  epochs: 2\nattack:\n  eps: 0.3\n")
    cfg = load(path, ["--train.epochs=4"])
    assert (cfg.train.method, cfg.train.epochs, cfg.attack.eps) == ("trades", 4, 0.3)
    assert isinstance(Config().to_dict()["train"], dict)
    # lists from the command line: comma-separated numbers, one factor per milestone
    cfg = load(None, ["--train.milestones=0.5,0.75,0.9167", "--train.lr_decay=0.1,0.1,0.5"])
    assert cfg.train.milestones == [0.5, 0.75, 0.9167] and cfg.train.lr_decay == [0.1, 0.1, 0.5]


@pytest.mark.parametrize(
    "values,fragment",
    [
        ({"attack": {"eps": -0.1}}, "attack.eps=-0.1 must be >= 0"),
        ({"train": {"method": "nope"}}, "choose one of"),
        ({"train": {"metod": "at"}}, "valid keys in [train]"),
        ({"trian": {"method": "at"}}, "valid sections"),
        ({"data": {"dataset": "imagenet"}}, "fashion-mnist"),
        ({"model": {"name": "vgg"}}, "tiny-cnn"),
        ({"eval": {"attacks": ["clean", "pgd-x"]}}, "pgd"),
        ({"train": {"epochs": "ten"}}, "must be an integer"),
        ({"train": {"progress": 1}}, "true or false"),
        ({"train": {"milestones": [30, 60]}}, "fractions"),
        ({"train": {"lr_decay": [0.1, 0.1, 0.5]}}, "one number or one factor per milestone (2)"),
        ({"train": {"lr_decay": 0}}, "train.lr_decay=0.0 must be > 0"),
        ({"train": {"method": "mail-at", "schedule": "constant"}}, "set --weighting.burn_in=N"),
        ({"eval": {"step_size": -0.01}}, "eval.step_size=-0.01 must be > 0"),
        ({"train": {"precision": "fp16"}}, "choose one of: fp32, bf16"),
        ({"train": {"precision": "bf16", "method": "mail-trades"}}, "plain, AT and TRADES training only"),
        ({"train": {"compile": "fast"}}, "choose one of: off, default, reduce-overhead, max-autotune"),
    ],
)
def test_bad_values_give_one_clear_error(values, fragment):
    with pytest.raises(ConfigError) as e:
        from_dict(values)
    assert fragment in str(e.value)


def test_bare_keys_resolve_to_their_only_section():
    cfg = load(None, ["--epochs=3", "--weighting=vir", "--objective=mart", "--gamma=2"])
    assert cfg.train.epochs == 3 and cfg.weighting.scheme == "vir" and cfg.train.objective == "mart"
    assert cfg.weighting.gamma == 2.0
    with pytest.raises(ConfigError, match="weighting.scheme='softmax' is not valid; choose one of: uniform"):
        load(None, ["--weighting=softmax"])


def test_a_key_of_several_sections_takes_its_training_meaning_in_the_cli_and_the_api():
    from irat.config import resolve_config

    for cfg in (
        load(None, ["--batch_size=64", "--step_size=0.01", "--limit=300"]),
        resolve_config(None, batch_size=64, step_size=0.01, limit=300),
    ):
        assert cfg.train.batch_size == 64 and cfg.attack.step_size == 0.01 and cfg.data.limit == 300
        assert cfg.eval.batch_size is None and cfg.eval.step_size is None and cfg.eval.limit is None
    cfg = resolve_config(None, weighting="vir", **{"eval.limit": 100})
    assert cfg.weighting.scheme == "vir" and cfg.eval.limit == 100
    with pytest.raises(ConfigError, match="unknown option 'epoch'"):
        resolve_config(None, epoch=3)


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="--section.key=value"):
        load(None, ["--train.epochs"])
    with pytest.raises(ConfigError, match="unknown option 'epoch'"):
        load(None, ["--epoch=3"])
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "preset", sorted(Path(__file__).parent.parent.glob("configs/*.yaml")), ids=lambda p: p.stem
)
def test_every_preset_validates_and_reweights_from_its_first_lr_drop(preset):
    from irat.training.assemble import burn_in_epochs
    from irat.training.schedules import first_drop

    cfg = load(preset, ["--train.method=mail-at"])
    t = cfg.train
    assert burn_in_epochs(cfg) == first_drop(
        epochs=t.epochs, schedule=t.schedule, milestones=t.milestones, gamma=t.lr_decay
    )
