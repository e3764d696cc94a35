"""Callbacks for the fit loop: ``cb(iteration, metrics, model) -> bool | None``.

Returning True stops the fit; a callback may set ``stop_reason`` to say why.
"""

from __future__ import annotations

import math
import os
import time

from .validation import check_positive, check_positive_int

_OFF = ("0", "off", "false", "no")
_ON = ("1", "on", "true", "yes")


def progress_enabled(verbose) -> bool:
    """Progress bars are shown when ``verbose`` is truthy and ``MFLIB_PROGRESS`` is not off.

    ``MFLIB_PROGRESS`` takes 0/off/false/no or 1/on/true/yes in any case (unset or empty:
    on). Any other value raises ValueError, also when ``verbose`` is off, so a typo is
    never silently ignored.
    """
    value = os.environ.get("MFLIB_PROGRESS", "").strip()
    if value.lower() in _OFF:
        return False
    if value and value.lower() not in _ON:
        raise ValueError(
            f"MFLIB_PROGRESS={value!r} is not understood; set it to one of "
            f"{'/'.join(_OFF)} (no progress bars) or {'/'.join(_ON)} (any case), or unset it"
        )
    return bool(verbose)


class ProgressBar:
    """tqdm bar (terminal or Jupyter widget via ``tqdm.auto``) showing one metric."""

    def __init__(self, total: int, desc: str, monitor: str):
        from tqdm.auto import tqdm  # noqa: PLC0415  (tqdm.auto probes Jupyter at import)

        self.monitor = monitor
        self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def __call__(self, iteration, metrics, model):
        self.bar.update(1)
        shown = {
            k: f"{metrics[k]:.5g}"
            for k in (self.monitor, "train_rmse", "val_rmse")
            if isinstance(metrics.get(k), float)
        }
        if shown:
            self.bar.set_postfix(shown, refresh=False)

    def close(self):
        self.bar.close()


class EarlyStopping:
    """Stop when ``monitor`` (default validation RMSE) has not improved by ``min_delta``
    for ``patience`` iterations. Lower is better."""

    def __init__(self, monitor: str = "val_rmse", patience: int = 5, min_delta: float = 0.0):
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta

    def __call__(self, iteration, metrics, model):
        check_positive_int(self.patience, "patience")
        if iteration == 1 or not hasattr(self, "best_"):
            self.best_, self.best_iteration_, self.stop_reason = math.inf, 0, None
        if self.monitor not in metrics:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r}, which this fit does not record "
                f"(recorded: {sorted(metrics)}); pass eval_set=... to fit for 'val_rmse'"
            )
        value = metrics[self.monitor]
        if value < self.best_ - self.min_delta:
            self.best_, self.best_iteration_ = value, iteration
            return None
        if iteration - self.best_iteration_ >= self.patience:
            self.stop_reason = (
                f"early_stopping: {self.monitor} did not improve for {self.patience} "
                f"iterations (best {self.best_:.6g} at iteration {self.best_iteration_})"
            )
            return True
        return None


class TimeBudget:
    """Stop once the fit has used ``seconds`` of wall time."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, iteration, metrics, model):
        check_positive(self.seconds, "seconds")
        if iteration == 1 or not hasattr(self, "start_"):
            self.start_ = time.perf_counter() - metrics.get("wall_time", 0.0)
            self.stop_reason = None
        if time.perf_counter() - self.start_ >= self.seconds:
            self.stop_reason = f"time_budget: {self.seconds:g} s used"
            return True
        return None


class LogMetrics:
    """Print (or send to ``logger.info``) the metrics every ``every`` iterations."""

    def __init__(self, every: int = 1, logger=None):
        self.every = every
        self.logger = logger

    def __call__(self, iteration, metrics, model):
        if iteration % self.every:
            return None
        text = f"[{type(model).__name__}] iter {iteration}: " + ", ".join(
            f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in metrics.items()
            if k != "iteration"
        )
        if self.logger is None:
            print(text)
        else:
            self.logger.info(text)
        return None
