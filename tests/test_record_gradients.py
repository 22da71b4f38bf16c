"""Gradients and distributions (issue 26): what the hooks measure equals a fresh
computation on the same batches, recording them changes no weight, and histograms count
every element."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from generator import Recorder
from generator.__main__ import main
from generator.record.gradients import GradientMonitor, fixed_edges, histogram
from generator.record.sampling import PassSampler
from generator.store import LayerSpec, open_run

CLASSES = ["a", "b", "c"]
STEPS = 3


class Tiny(nn.Module):
    """A conv and two linear layers: every kind of parameter owner the monitor follows."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.hidden = nn.Linear(4 * 8 * 8, 6)
        self.logits = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(torch.relu(self.hidden(torch.relu(self.conv(x)).flatten(1))))


def train(out: Path | None, *, gradients: bool = True) -> tuple[nn.Module, list[dict]]:
    """STEPS SGD steps on fixed batches, recorded as one epoch into ``out`` (None: bare);
    returns the model and, per step, each parameter's gradient and weights before it."""
    torch.manual_seed(0)
    model = Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data, labels = torch.rand(4 * STEPS, 3, 8, 8), torch.arange(4 * STEPS) % 3
    probes = (torch.rand(2, 3, 8, 8) * 255).to(torch.uint8)
    rec = None
    if out is not None:
        rec = Recorder(
            model, probes=probes, out=out, class_names=CLASSES, featviz_layers=[],
            overhead=None, gradients=gradients,
        )  # fmt: skip
    seen = []
    for step in range(STEPS):
        batch = slice(4 * step, 4 * step + 4)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data[batch]), labels[batch]).backward()
        seen.append({n: (p.grad.clone(), p.detach().clone()) for n, p in model.named_parameters()})
        optimizer.step()
    if rec is not None:
        rec.epoch(train_loss=1.0)
        rec.close()
    return model, seen


@pytest.mark.parametrize("every", [1, 2])
def test_gradient_norms_ratios_and_histograms_match_a_fresh_computation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    """One recorded epoch against the same steps without a Recorder: the same weights, and
    per layer the RMS and max of the per-pass gradient norm, the mean update/weight ratio
    of the step after each pass and the gradient histogram, over the passes the monitor
    measured (every pass, or every second: 0 and 2 of 3), computed here from that run's
    gradients."""
    monkeypatch.setattr("generator.record.epochs.GRADIENT_EVERY", every)
    sampled = [k for k in range(STEPS) if k % every == 0]
    recorded, _ = train(tmp_path / "run.zarr")
    bare, seen = train(None)
    for (name, a), b in zip(recorded.state_dict().items(), bare.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # recording changes no weight
    final = {n: p.detach() for n, p in bare.named_parameters()}
    run = open_run(tmp_path / "run.zarr")
    stats = run.gradients()
    assert stats is not None and stats.layers == ("conv", "hidden", "logits")
    assert np.isnan(stats.norm[0]).all() and (stats.passes[0] == 0).all()  # epoch 0
    for index, layer in enumerate(stats.layers):
        names = [f"{layer}.weight", f"{layer}.bias"]
        norms = [
            math.sqrt(sum(float(seen[k][n][0].square().sum()) for n in names)) for k in sampled
        ]
        assert stats.passes[1, index] == STEPS and stats.sampled[1, index] == len(sampled)
        assert math.isclose(
            stats.norm[1, index], math.sqrt(np.mean(np.square(norms))), rel_tol=1e-5
        )
        assert math.isclose(stats.norm_max[1, index], max(norms), rel_tol=1e-5)
        weights = [[s[n][1] for n in names] for s in seen] + [[final[n] for n in names]]
        ratios = [_ratio(weights[k + 1], weights[k]) for k in sampled]
        assert math.isclose(stats.update_ratio[1, index], np.mean(ratios), rel_tol=1e-4)
        edges, counts = run.histograms("gradients").of(layer)
        expected = np.mean(
            [_counts([seen[k][n][0] for n in names], edges[1]) for k in sampled], axis=0
        )
        assert math.isclose(counts[1].sum(), expected.sum())  # a value at an edge may
        assert np.abs(np.cumsum(counts[1] - expected)).max() <= 1  # land beside it
    _check_histograms(run, {n: p.numel() for n, p in bare.named_parameters()})


def _ratio(after: list[torch.Tensor], before: list[torch.Tensor]) -> float:
    moved = sum(float((a - b).double().square().sum()) for a, b in zip(after, before, strict=True))
    return math.sqrt(moved / sum(float(b.double().square().sum()) for b in before))


def _counts(values: list[torch.Tensor], edges: np.ndarray) -> np.ndarray:
    """Bins [e_i, e_i+1) with an underflow and an overflow bin, by where each edge falls
    among the sorted values."""
    flat = np.sort(np.concatenate([v.numpy().ravel() for v in values]))
    return np.diff(np.concatenate([[0], np.searchsorted(flat, edges), [flat.size]]))


def _check_histograms(run, params: dict[str, int]) -> None:
    """Every histogram sums to its element count (weights: the kernel or matrix, as
    weight_change follows it; gradients: every parameter), with edges fixed over epochs."""
    for kind in ("weights", "activations", "gradients"):
        histograms = run.histograms(kind)
        for index, layer in enumerate(histograms.layers):
            count = {
                "weights": params[f"{layer}.weight"],
                "gradients": params[f"{layer}.weight"] + params[f"{layer}.bias"],
                "activations": run.n_probes * math.prod(run.layer(layer).shape),
            }[kind]
            sums = histograms.counts[:, index].sum(axis=1)
            rows = slice(1, None) if kind == "gradients" else slice(None)
            np.testing.assert_allclose(sums[rows], count, err_msg=f"{kind} {layer}")
            assert (histograms.edges[rows, index] == histograms.edges[-1, index]).all()


def test_gradients_off_stores_none_and_old_stores_read_none(tmp_path: Path) -> None:
    train(tmp_path / "off.zarr", gradients=False)
    run = open_run(tmp_path / "off.zarr")
    assert run.attrs.gradients is None and run.gradients() is None
    assert run.histograms("weights") is None
    assert not (tmp_path / "off.zarr" / "gradients").exists()


def test_monitor_hooks_leave_grads_alone_and_go_away_on_close() -> None:
    """The hook returns nothing (a grad it changed would differ here), pauses and is
    removed by close."""
    torch.manual_seed(1)
    model = Tiny()
    spec = [LayerSpec("logits", "linear", (3,), None, 21, None, module="logits")]
    monitor = GradientMonitor(model, spec, bins=8, sampler=PassSampler(every=1))
    x = torch.rand(2, 3, 8, 8)
    model(x).sum().backward()
    hooked = model.logits.weight.grad.clone()
    with monitor.pause():
        model(x).sum().backward()
    monitor.close()
    model(x).sum().backward()
    assert torch.equal(model.logits.weight.grad, 3 * hooked)
    weights = {f"logits.{n}": p.detach().clone() for n, p in model.logits.named_parameters()}
    taken = monitor.take({"logits": np.zeros((2, 3), np.float16)}, weights)
    assert taken["gradients/passes"].tolist() == [1]


class Gated(nn.Module):
    """A layer whose second parameter only some passes reach (a branch taken or not)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.extra = nn.Parameter(torch.ones(3))
        self.use_extra = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + (self.extra if self.use_extra else 0)


def test_a_pass_that_leaves_a_parameter_without_a_gradient_still_counts() -> None:
    """Passes 2 and 4 of 5 do not reach ``extra``: each pass counts all the same, and the
    measuring decision of one pass never sticks to the next (every 2nd is measured)."""
    model = nn.Sequential()
    model.add_module("gated", Gated())
    spec = [LayerSpec("gated", "linear", (3,), None, 6, None, module="gated")]
    monitor = GradientMonitor(model, spec, bins=8, sampler=PassSampler(every=2))
    for index in range(5):
        model.gated.use_extra = index % 2 == 0
        model(torch.ones(2, 3)).sum().backward()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    taken = monitor.take({"gated": np.zeros((2, 3), np.float16)}, weights)
    assert taken["gradients/passes"].tolist() == [5]
    assert taken["gradients/sampled"].tolist() == [3]  # passes 0, 2 and 4
    monitor.close()


def test_a_half_precision_gradient_norm_does_not_overflow() -> None:
    """float16 holds at most 65504: a norm of 1e5 is measured in float32 at least."""
    from generator.record.gradients import _squared_norm

    big = torch.full((10_000,), 1000.0, dtype=torch.float16)
    assert float(_squared_norm([big])) == pytest.approx(1e10, rel=1e-3)


def test_a_histogram_counts_exactly_past_two_to_the_24() -> None:
    """torch's ``histc`` counts in float32 per thread, so one thread's bin stops at 2^24;
    the monitor counts in pieces below that."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        zeros = torch.zeros(2**24 + 1000)
        counts = histogram([zeros], fixed_edges(-1.0, 1.0, 1))
    finally:
        torch.set_num_threads(threads)
    assert counts.tolist() == [0, 2**24 + 1000, 0]


def test_histogram_edges_and_out_of_range_bins() -> None:
    edges = fixed_edges(0.0, 4.0, 4)  # widened by half the range on each side
    np.testing.assert_allclose(edges, [-2, 0, 2, 4, 6])
    counts = histogram([torch.tensor([-9.0, -1.0, 1.0, 5.0, 7.0, float("nan")])], edges)
    assert counts.tolist() == [1, 1, 1, 0, 1, 1]
    np.testing.assert_allclose(fixed_edges(0.0, 0.0, 2), [-1, 0, 1])


def test_train_records_gradients_unless_told_not_to(
    trained_run: Path, demo_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train`` records them by default (the shared run), ``--no-gradients`` not at all."""
    stats = open_run(trained_run).gradients()
    assert stats is not None and (stats.passes[1:] > 0).all()
    measured = stats.sampled[1:] > 0  # the monitor samples the passes (record/sampling.py)
    assert measured[0].all() and np.isfinite(stats.norm[1:][measured]).all()
    monkeypatch.setenv("NETLAPSE_CACHE", str(demo_cache))
    out = tmp_path / "off.zarr"
    settings = ["--demo-per-class", "4", "--batch-size", "8", "--probes", "2", "--epochs", "1"]
    settings += ["--input-size", "32", "--channels", "4,8,8", "--featviz-layers", "none"]
    assert main(["-q", "train", "--out", str(out), *settings, "--no-gradients"]) == 0
    assert open_run(out).gradients() is None and open_run(out).attrs.gradients is None
