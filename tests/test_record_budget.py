"""The overhead budget's accounts, on a clock the test moves: what the optional work may
take is a pure function of the training and recording times measured."""

from __future__ import annotations

import math

import pytest

from generator.errors import OptionError
from generator.record.budget import OverheadBudget, check_overhead


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def budget_after(*, recording: float, training: float, overhead: float = 0.03) -> OverheadBudget:
    """A budget whose Recorder took ``recording`` s to create, then ``training`` s passed."""
    clock = Clock()
    budget = OverheadBudget(overhead, clock=clock)
    clock.now += recording
    budget.end()
    clock.now += training
    budget.begin()
    return budget


def test_no_featviz_step_while_creating_the_recorder():
    """Before any training was timed there is no credit, so not even the measuring step."""
    clock = Clock()
    budget = OverheadBudget(0.03, clock=clock)
    clock.now += 2.0
    assert budget.featviz_steps(8) == 0


def test_one_measuring_step_once_there_is_credit_then_what_the_credit_pays_for():
    budget = budget_after(recording=1.0, training=100.0)  # credit 0.03 * 100 - 1 = 2 s
    assert budget.credit() == pytest.approx(2.0)
    assert budget.featviz_steps(8) == 1  # unmeasured: one step, the measurement
    budget.step_cost = 0.5
    assert budget.featviz_steps(8) == 4
    assert budget.featviz_steps(3) == 3  # never more than asked


def test_over_budget_no_step_and_no_examples_once_measured():
    budget = budget_after(recording=5.0, training=100.0)  # credit 3 - 5 < 0
    assert budget.featviz_steps(8) == 0
    assert budget.examples_due()  # unmeasured: found once, paid back afterwards
    budget.examples_cost = 0.1
    assert not budget.examples_due()


def test_waiting_for_the_write_is_not_training():
    clock = Clock()
    budget = OverheadBudget(0.03, clock=clock)
    budget.end()
    clock.now += 100.0
    budget.begin(waits=40.0, writes=1.0)  # 40 s of it waited for the writer
    assert budget.training == pytest.approx(60.0)
    assert budget.spent == pytest.approx(1.0)


def test_the_credit_mid_training_counts_the_training_so_far_and_charges_the_monitor():
    """The gradient monitor asks in the middle of an epoch: the training since the last
    ``epoch()`` counts (less the monitor's own work inside it), and that work and the
    writes finished since are charged."""
    clock = Clock()
    budget = OverheadBudget(0.03, clock=clock)
    clock.now += 1.0  # creating the Recorder
    budget.end()
    clock.now += 100.0  # training, 2 s of it the monitor's
    assert budget.live_credit(monitor=2.0, writes=0.5) == pytest.approx(
        0.03 * 98.0 - 1.0 - 2.0 - 0.5
    )
    assert budget.live_credit(monitor=0.0, writes=0.0) == pytest.approx(0.03 * 100.0 - 1.0)
    budget.begin(monitor=2.0, writes=0.5)  # epoch(): the same accounts, now booked
    budget.end()
    assert budget.live_credit(monitor=2.0, writes=0.5) == pytest.approx(budget.credit())
    assert budget.credit() == pytest.approx(0.03 * 98.0 - 1.0 - 2.0 - 0.5)


def test_epoch_zeros_write_inside_the_recorder_is_charged_once():
    """``Recorder()`` writes epoch 0 and waits for it: its wall time is charged when it
    ends; the writer's totals then are settled, so the first ``epoch()`` charges neither
    the write again nor takes its wait out of the training."""
    clock = Clock()
    budget = OverheadBudget(0.03, clock=clock)
    clock.now += 2.0  # creating the store, writing epoch 0 (1.5 s) and waiting for it
    budget.settle(writes=1.5, waits=1.5)
    budget.end()
    clock.now += 100.0
    budget.begin(writes=1.5 + 0.4, waits=1.5)  # epoch 1's own write: 0.4 s
    assert budget.spent == pytest.approx(2.0 + 0.4)
    assert budget.training == pytest.approx(100.0)


def test_without_a_limit_there_is_no_budget():
    budget = OverheadBudget(None)
    assert budget.featviz_steps(8) is None
    assert budget.credit() == math.inf
    assert budget.note(3, True) is None


@pytest.mark.parametrize("bad", [0, 1.5, -0.1, True, "3%"])
def test_an_overhead_outside_zero_to_one_is_refused(bad):
    with pytest.raises(OptionError, match="overhead="):
        check_overhead(bad)
