"""Typed config: defaults, YAML, overrides (bad values: tests/test_bad_input.py)."""

from pathlib import Path

import pytest

from irat.config import Config, ConfigError, load


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
