"""The pass sampler: a fixed stride (a function of the pass count) or a share of the time."""

from __future__ import annotations

import pytest

from generator.record.sampling import PassSampler


def measure(sampler: PassSampler, seconds: float) -> None:
    """A measurement of ``seconds``, as the monitor reports one (inside its hook's time)."""
    sampler.spent(seconds)
    sampler.measured(seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def after_a_measured_first_pass(*, share: float, seconds: float) -> tuple[PassSampler, Clock]:
    """A sampler whose first pass was measured (always) and took ``seconds``, one second
    of training later."""
    clock = Clock()
    sampler = PassSampler(share=share, clock=clock)
    assert sampler.due(0)
    measure(sampler, seconds)
    clock.now += 1.0
    return sampler, clock


def test_every_k_measures_passes_zero_k_2k_whatever_the_time():
    sampler = PassSampler(every=4)
    assert [sampler.due(k) for k in range(10)] == [k % 4 == 0 for k in range(10)]


def test_a_share_keeps_the_measurements_within_it():
    """Passes of 0.1 s of training, measurements of 0.05 s: at a share of 1 % about one
    pass in 50 is measured, and the measurements stay within 1 % of the time (plus one)."""
    clock = Clock()
    sampler = PassSampler(share=0.01, clock=clock)
    measured = 0
    for index in range(2000):
        clock.now += 0.1
        if sampler.due(index):
            measured += 1
            clock.now += 0.05
            measure(sampler, 0.05)
    assert 30 <= measured <= 45
    assert sampler.seconds <= 0.01 * clock.now + 0.05


def test_the_runs_first_pass_is_always_measured_an_epochs_first_not():
    """The run's first pass fixes the histogram's edges, whatever the budget; a later
    epoch's first pass (numbers start again from 0) is one more pass the budget decides."""
    sampler, _ = after_a_measured_first_pass(share=0.001, seconds=10.0)
    assert not sampler.due(1)
    sampler.next_epoch()
    assert not sampler.due(0)


def test_every_layer_of_one_pass_gets_the_same_answer():
    """The layers' hooks of one backward pass ask in turn: the first decides for all, even
    when the time moved meanwhile."""
    sampler, clock = after_a_measured_first_pass(share=0.5, seconds=1.0)
    assert not sampler.due(1)
    clock.now += 10.0  # later layers of pass 1 come after a long while
    assert not sampler.due(1)
    assert sampler.due(2)


@pytest.mark.parametrize("kwargs", [{}, {"every": 2, "share": 0.1}, {"every": 0}])
def test_one_rule_exactly(kwargs):
    with pytest.raises(ValueError):
        PassSampler(**kwargs)


def test_without_credit_left_only_the_runs_first_pass_is_measured():
    """The record and its write come first: while they take the whole budget the monitor
    measures nothing after the run's first pass, however small its own share, in this
    epoch or the next."""
    clock = Clock()
    asked: list[float] = []

    def no_credit(seconds: float) -> float:
        asked.append(seconds)
        return -1.0

    sampler = PassSampler(share=0.5, credit=no_credit, clock=clock)
    clock.now += 100.0
    assert [sampler.due(k) for k in range(5)] == [True, False, False, False, False]
    measure(sampler, 0.25)
    assert not sampler.due(5) and asked[-1] == 0.25  # it tells the budget its own time
    sampler.next_epoch()
    assert not sampler.due(0)


def test_with_credit_left_the_share_still_caps_the_monitor():
    clock = Clock()
    sampler = PassSampler(share=0.01, credit=lambda seconds: 1e9, clock=clock)
    measured = 0
    for index in range(2000):
        clock.now += 0.1
        if sampler.due(index):
            measured += 1
            measure(sampler, 0.05)
    assert 30 <= measured <= 45


def test_the_hooks_own_time_does_not_stop_the_measuring():
    """The hooks cost something in every pass, measured or not, and measuring less cannot
    make them cheaper: the share bounds the measurements; the budget is told everything."""
    clock = Clock()
    told: list[float] = []
    sampler = PassSampler(share=0.01, credit=lambda s: told.append(s) or 1e9, clock=clock)
    measured = 0
    for index in range(1000):
        clock.now += 0.1
        sampler.spent(0.002)  # the hooks: 2 % of each pass, over the 1 % share alone
        if sampler.due(index):
            measured += 1
            sampler.spent(0.05)
            sampler.measured(0.05)
    assert 15 <= measured <= 25
    assert told[-1] == pytest.approx(sampler.seconds)  # hooks and measurements
