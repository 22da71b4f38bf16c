"""Issue 23: the Recorder records every ordinary network: any output (dict, tuple, object
with ``.logits``), a module called more than once per forward, reparametrised weights,
compiled and DataParallel wrappers, a validation loop's ``inference_mode``."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from generator import Recorder, open_run
from generator.data import to_model_input
from generator.errors import ModelOutputError, OptionError
from generator.train.session import logits_of

QUICK: dict[str, Any] = {"featviz_layers": []}


def tiny(classes: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, classes),
    )


def probes(count: int = 3, size: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)


class DictOut(nn.Module):
    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.body, self.extra = tiny(), extra

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.body(x)
        out = {"logits": logits, "aux": x.mean()}
        if self.extra:
            out["other"] = logits * 2
        return out


class HFOutput:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits, self.hidden = logits, logits.unsqueeze(1)


class ObjectOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = tiny()

    def forward(self, x: torch.Tensor) -> HFOutput:
        return HFOutput(self.body(x))


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = tiny()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.body(x)
        return logits, logits + 1


@pytest.mark.parametrize(
    ("model", "output"),
    [
        (DictOut(), None),
        (DictOut(extra=True), "logits"),
        (ObjectOut(), None),
        (TupleOut(), 0),
        (TupleOut(), lambda out: out[1]),
    ],
)
def test_any_output_records(tmp_path: Path, model: nn.Module, output: Any) -> None:
    with Recorder(model, probes=probes(), out=tmp_path / "r.zarr", output=output, **QUICK) as rec:
        rec.epoch(train_loss=1.0)
    run = open_run(tmp_path / "r.zarr")
    assert run.epochs == 2 and len(run.attrs.class_names) == 3


def test_ambiguous_output_is_one_line_and_leaves_no_store(tmp_path: Path) -> None:
    with pytest.raises(ModelOutputError, match="output="):
        Recorder(DictOut(extra=True), probes=probes(), out=tmp_path / "r.zarr", **QUICK)
    with pytest.raises(ModelOutputError, match="output='nope'"):
        Recorder(DictOut(), probes=probes(), out=tmp_path / "r.zarr", output="nope", **QUICK)
    assert not (tmp_path / "r.zarr").exists()


def test_train_finds_the_logits_the_same_way() -> None:
    logits = torch.zeros(2, 3)
    assert logits_of({"logits": logits, "aux": torch.zeros(())}) is logits
    assert logits_of(HFOutput(logits)) is logits
    with pytest.raises(ModelOutputError, match="output="):
        logits_of((logits, logits))


class Twice(nn.Module):
    """One conv applied at two resolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.shared(x)
        b = self.shared(nn.functional.avg_pool2d(x, 2))
        return self.head(a.mean((2, 3)) + b.mean((2, 3)))


def test_a_module_called_twice_is_two_layers(tmp_path: Path) -> None:
    model = Twice()
    with Recorder(model, probes=probes(), out=tmp_path / "r.zarr", **QUICK) as rec:
        rec.epoch()
    run = open_run(tmp_path / "r.zarr")
    assert run.layer_at("shared", 1).shape == (3, 3, 16, 16)
    assert run.layer_at("shared#2", 1).shape == (3, 3, 8, 8)
    assert run.layer("shared").is_conv and not run.layer("shared#2").is_conv
    assert run.kernels("shared").shape == (2, 3, 3, 3, 3)
    with torch.no_grad():
        second = model.shared(nn.functional.avg_pool2d(to_model_input(probes()).float(), 2))
    np.testing.assert_allclose(run.layer_at("shared#2", 1), second.numpy(), atol=1e-2)


def test_a_module_called_twice_refuses_examples_before_writing(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="'shared'.*example_pool=None"):
        Recorder(Twice(), probes=probes(), out=tmp_path / "r.zarr", example_pool=probes(4), **QUICK)
    assert not (tmp_path / "r.zarr").exists()


def _reparametrised() -> dict[str, nn.Sequential]:
    utils = torch.nn.utils

    class Doubled(nn.Module):
        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            return weight * 2

    made = {name: tiny() for name in ("wn", "sn", "old_wn", "old_sn", "param", "pruned")}
    utils.parametrizations.weight_norm(made["wn"][0])
    utils.parametrizations.spectral_norm(made["sn"][0])
    utils.weight_norm(made["old_wn"][0])
    utils.spectral_norm(made["old_sn"][0])
    utils.parametrize.register_parametrization(made["param"][0], "weight", Doubled())
    prune.l1_unstructured(made["pruned"][0], "weight", 0.5)
    return made


@pytest.mark.parametrize("kind", ["wn", "sn", "old_wn", "old_sn", "param", "pruned"])
def test_reparametrised_kernels_are_the_weight_in_use(tmp_path: Path, kind: str) -> None:
    model = _reparametrised()[kind]
    with Recorder(model, probes=probes(), out=tmp_path / "r.zarr", **QUICK) as rec:
        rec.epoch()
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 16, 16))  # the old hooks compute .weight in the forward
        expected = model[0].weight.detach().numpy()
    stored = open_run(tmp_path / "r.zarr").kernels("0", 1)  # float16 or float32 kernels
    np.testing.assert_allclose(stored, expected, rtol=1e-2, atol=1e-3)


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    inputs = torch.randn(4, 3, 16, 16)
    loss = nn.functional.cross_entropy(model(inputs), torch.tensor([0, 1, 2, 0]))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("kind", ["sn", "old_sn"])
def test_recording_spectral_norm_leaves_training_bit_identical(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    plain = _reparametrised()[kind]
    recorded = copy.deepcopy(plain)
    ends = []
    for model, record in ((plain, False), (recorded, True)):
        torch.manual_seed(5)
        random.seed(5)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        _train_step(model, optimizer)
        if record:
            with Recorder(model, probes=probes(), out=tmp_path / "r.zarr", **QUICK) as rec:
                _train_step(model, optimizer)
                rec.epoch()
        else:
            _train_step(model, optimizer)
        _train_step(model, optimizer)
        ends.append((model.state_dict(), torch.get_rng_state(), random.random()))
    (state_a, rng_a, py_a), (state_b, rng_b, py_b) = ends
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    assert torch.equal(rng_a, rng_b) and py_a == py_b


def _layer_names(model: nn.Module, out: Path) -> list[str]:
    with Recorder(model, probes=probes(), out=out, **QUICK) as rec:
        rec.epoch()
    return [layer.name for layer in open_run(out).attrs.layers]


def test_wrappers_keep_the_plain_model_layer_names(tmp_path: Path) -> None:
    model = tiny()
    plain = _layer_names(model, tmp_path / "plain.zarr")
    compiled = torch.compile(model, backend="eager")
    assert _layer_names(compiled, tmp_path / "compiled.zarr") == plain  # type: ignore[arg-type]
    assert _layer_names(nn.DataParallel(model), tmp_path / "dp.zarr") == plain
    assert "0" in plain
    import torch.distributed as dist

    dist.init_process_group(  # one CPU rank (gloo), enough to build a DDP wrapper
        "gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1
    )
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        assert _layer_names(ddp, tmp_path / "ddp.zarr") == plain
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("mode", [torch.inference_mode, torch.no_grad])
def test_recording_inside_a_validation_loop(tmp_path: Path, mode: Any) -> None:
    model = tiny()
    with mode():
        rec = Recorder(model, probes=probes(), out=tmp_path / "r.zarr", featviz_steps=1)
    with rec:
        with mode():
            rec.epoch(val_loss=1.0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        _train_step(model, optimizer)  # the Recorder made no inference tensor of the model
        with mode():
            rec.epoch(val_loss=0.5)
    assert open_run(tmp_path / "r.zarr").epochs == 3


class FailsLater(nn.Module):
    """Runs once (the Recorder's trace), then fails."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.calls = tiny(), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom")
        return self.body(x)


def test_a_failed_recorder_leaves_no_store_but_never_removes_one(tmp_path: Path) -> None:
    out = tmp_path / "r.zarr"
    with pytest.raises(RuntimeError, match="boom"):
        Recorder(FailsLater(), probes=probes(), out=out, **QUICK)
    assert not out.exists()
    works = FailsLater()
    works.calls = -10
    Recorder(works, probes=probes(), out=out, **QUICK).close()
    rec = Recorder(FailsLater(), probes=probes(), out=out, resume=True, **QUICK)
    with pytest.raises(RuntimeError, match="boom"):
        rec.epoch()
    rec.release()
    assert open_run(out).epochs == 1
