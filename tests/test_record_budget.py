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


def test_without_a_limit_there_is_no_budget():
    budget = OverheadBudget(None)
    assert budget.featviz_steps(8) is None
    assert budget.credit() == math.inf
    assert budget.note(3, True) is None


@pytest.mark.parametrize("bad", [0, 1.5, -0.1, True, "3%"])
def test_an_overhead_outside_zero_to_one_is_refused(bad):
    with pytest.raises(OptionError, match="overhead="):
        check_overhead(bad)
