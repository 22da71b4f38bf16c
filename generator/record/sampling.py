"""Which backward passes the gradient monitor measures, so its cost is one a user can plan.

Measuring a pass (the gradient norm, its histogram, the update/weight ratio) reads every
recorded parameter and gradient a few times: on a CPU resnet18 at 32 px that is more than
the backward pass itself. So the monitor measures a sample of the passes and says how many
(``passes`` counts them all, ``sampled`` the measured ones); the norm's RMS, its maximum,
the mean update ratio and the mean histogram are then over the sampled passes, each an
unbiased estimate over the epoch's passes.

Two ways to choose, both free of the training's own randomness:

- ``every=k`` (no overhead budget, ``train``'s default): passes 0, k, 2k, … of each epoch
  are measured. The choice is a function of the pass count alone, so a run's store is a
  function of its seed (a killed ``train`` resumed is bit-identical).
- ``share=s`` (a Recorder's ``overhead=`` budget): a pass is measured when the
  measurements' time so far is at most ``s`` of the wall time since the monitor started
  and the whole budget still has credit (``credit``), all the monitor's time charged to
  it: its hooks' too, which measuring less cannot make cheaper, so they do not stop the
  measuring. The record and its write come first, as for feature visualization: while
  the record alone takes the budget, no pass is measured, and ``sampled`` says so. The
  run's first pass is always measured (it fixes the histogram's edges). The measurements
  then cost at most about ``s`` of training whatever the model, and never take the
  budget past its limit by more than one pass.

Every layer's hook asks about its own pass number; the first to ask about a pass decides
it for all, so one backward pass is measured in every layer or in none.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class PassSampler:
    """Says for each backward pass whether to measure it (``due``), and is told the
    seconds each measurement took (``spent``)."""

    def __init__(
        self,
        *,
        every: int | None = None,
        share: float | None = None,
        credit: Callable[[float], float] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``credit(seconds)``: the overhead budget's seconds left now, given the
        monitor's own ``seconds`` so far (share mode only; None: no other limit)."""
        if (every is None) == (share is None):
            raise ValueError("pass exactly one of every= or share=")
        if every is not None and every < 1:
            raise ValueError(f"every={every}: pass a count of passes, at least 1")
        self.every, self.share, self._clock, self._credit = every, share, clock, credit
        self.seconds = 0.0  # all the monitor's time: its hooks and its measurements
        self.measuring = 0.0  # the measurements' part of it, which the share bounds
        self._start = clock()
        self._decided: tuple[int, bool] | None = None  # the last pass decided, and how
        self._measured_any = False  # the run's first pass is measured whatever the budget

    def due(self, index: int) -> bool:
        """Whether pass ``index`` (from 0; a layer's count of its passes) is measured."""
        if self._decided is not None and self._decided[0] == index:
            return self._decided[1]
        if self.every is not None:
            due = index % self.every == 0
        else:
            budget = (self.share or 0.0) * (self._clock() - self._start)
            left = self._credit(self.seconds) if self._credit is not None else 1.0
            due = not self._measured_any or (self.measuring <= budget and left > 0)
        self._measured_any = self._measured_any or due
        self._decided = (index, due)
        return due

    def next_epoch(self) -> None:
        """The pass numbers start again from 0: no decision of the last epoch stands."""
        self._decided = None

    def spent(self, seconds: float) -> None:
        """The monitor took ``seconds`` (a hook call, with any measurement in it)."""
        self.seconds += seconds

    def measured(self, seconds: float) -> None:
        """A measurement took ``seconds`` (already within a ``spent``)."""
        self.measuring += seconds
