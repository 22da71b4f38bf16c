"""The overhead budget: recording takes at most ``overhead`` of the training time.

The user's training is the wall time from the end of one ``epoch()`` to the start of the
next (less any wait for the previous write); recording is everything else the Recorder
does: creating it, each ``epoch()`` (capture, feature visualization, dataset examples) and
the background write. The capture and the write are the record itself and always run;
the optional work gets only the credit left, ``overhead x training - recording`` summed
over the run so far: feature visualization fewer steps (0 = this epoch's images are the
last ones again), dataset examples skipped (the last ones stand). Until its cost is
measured, feature visualization takes one step, the measurement, at the first record with
credit (so never while creating the Recorder, before any training was timed: epoch 0's
images are then the noise they start from); the warm start carries every step into the
next epoch, so the images keep developing at whatever pace the budget allows. Dataset
examples run in full the first time (their cost is one pass over the pool) and are paid
back afterwards.
Every choice is a pure function of the times measured, and is said in the store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from generator.errors import OptionError


def check_overhead(overhead: float | None) -> None:
    """A share of training time in (0, 1], or None for no limit."""
    if overhead is None:
        return
    if isinstance(overhead, bool) or not isinstance(overhead, (int, float)):
        raise OptionError(f"overhead={overhead!r}: pass a share of training time or None")
    if not 0 < overhead <= 1:
        raise OptionError(f"overhead={overhead!r}: pass a share between 0 and 1, or None")


class OverheadBudget:
    """Time accounts of one Recorder: ``training`` and ``spent`` (recording) in seconds,
    and the cost of the optional work as last measured. ``overhead`` None: no limit."""

    def __init__(
        self, overhead: float | None, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.overhead, self._clock = overhead, clock
        self.training = self.spent = 0.0
        self.step_cost: float | None = None  # seconds per featviz step (all layers)
        self.examples_cost: float | None = None  # seconds per search of the pool
        self._busy_since: float | None = clock()  # creating the Recorder is recording
        self._idle_since: float | None = None
        self._writes = self._waits = 0.0  # the background writer's totals, last seen
        self._monitor = 0.0  # the gradient monitor's total, last seen

    def begin(self, *, writes: float = 0.0, waits: float = 0.0, monitor: float = 0.0) -> None:
        """Recording starts: the time since it last ended was training, less the wait for
        the write (``waits``: the writer's total) and the gradient monitor's work inside the
        backward passes (``monitor``: its total), which are recording, as the writes that
        ran on (``writes``: the writer's total)."""
        now = self._clock()
        hooks = monitor - self._monitor
        self.spent += writes - self._writes + hooks
        if self._busy_since is None and self._idle_since is not None:
            self.training += max(0.0, now - self._idle_since - (waits - self._waits) - hooks)
        self._writes, self._waits, self._monitor = writes, waits, monitor
        if self._busy_since is None:
            self._busy_since = now

    def settle(self, *, writes: float, waits: float) -> None:
        """The writer's totals so far (``writes``, ``waits``) ran inside recording that
        ``end()`` charges by its wall time: they are not charged again by ``begin``."""
        self._writes, self._waits = writes, waits

    def end(self) -> None:
        """Recording ends (again: time since the last end is charged too)."""
        now = self._clock()
        since = self._busy_since if self._busy_since is not None else self._idle_since
        self.spent += now - (since if since is not None else now)
        self._busy_since, self._idle_since = None, now

    def credit(self) -> float:
        """Seconds the optional work may take now (negative: recording is over budget)."""
        if self.overhead is None:
            return math.inf
        busy = 0.0 if self._busy_since is None else self._clock() - self._busy_since
        return self.overhead * self.training - self.spent - busy

    def live_credit(self, *, monitor: float, writes: float) -> float:
        """The credit in the middle of training (the gradient monitor asks before measuring
        a pass): the training since the last ``epoch()`` counts, less the monitor's work
        inside it (``monitor``: its total) which is charged, as the writes finished since
        (``writes``: the writer's total)."""
        if self.overhead is None:
            return math.inf
        if self._busy_since is not None or self._idle_since is None:
            return self.credit()
        hooks, written = monitor - self._monitor, writes - self._writes
        running = max(0.0, self._clock() - self._idle_since - hooks)
        return self.overhead * (self.training + running) - self.spent - hooks - written

    def featviz_steps(self, full: int) -> int | None:
        """Steps featviz may take, at most ``full``: None (its own default) without a
        limit; until a step's cost is measured 1 when there is credit (the measurement,
        over the budget by at most one step once), else 0; then what the credit pays for."""
        if self.overhead is None:
            return None
        if self.step_cost is None:
            return 1 if self.credit() > 0 else 0
        return max(0, min(full, math.floor(self.credit() / max(self.step_cost, 1e-9))))

    def examples_due(self) -> bool:
        """Whether the dataset examples fit in the credit left (always while unmeasured)."""
        if self.overhead is None or self.examples_cost is None:
            return True
        return self.credit() >= self.examples_cost

    def timed(self, work: Callable[[], Any]) -> tuple[Any, float]:
        """``work()`` and the seconds it took."""
        start = self._clock()
        result = work()
        return result, self._clock() - start

    def note(self, featviz_steps: int | None, examples: bool | None) -> dict[str, Any] | None:
        """This epoch's entry in the store's ``budget`` attribute (None: no limit)."""
        if self.overhead is None:
            return None
        return {"overhead": self.overhead, "featviz_steps": featviz_steps, "examples": examples}
