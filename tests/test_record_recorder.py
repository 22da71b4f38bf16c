"""The Recorder API in a user's own loop: what it stores, and that it changes nothing."""

from __future__ import annotations

import errno
import random
import threading
import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from generator import Recorder
from generator.errors import NetlapseError, OptionError, StoreError
from generator.model import NetlapseCNN
from generator.record import LayerChoiceError
from generator.record.recorder import RecorderClosedError
from generator.store import StoreWriter, open_run

CLASSES = ["a", "b", "c"]
SIZE = 32


def probe_images(count: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0,
        256,
        (count, 3, SIZE, SIZE),
        generator=torch.Generator().manual_seed(seed),
        dtype=torch.uint8,
    )


def reference_cnn() -> nn.Module:
    return NetlapseCNN(len(CLASSES), SIZE, channels=(4, 8, 8), hidden=8)


class NoisyCNN(NetlapseCNN):
    """The reference CNN with input noise in every mode: its forward draws from torch's
    global generator even in eval mode, as some users' models do."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x + 1e-3 * torch.randn_like(x))


def noisy_cnn() -> nn.Module:
    return NoisyCNN(len(CLASSES), SIZE, channels=(4, 8, 8), hidden=8)


def small_resnet() -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=len(CLASSES))


def train_run(
    make_model, tmp_path, *, record: bool, steps: int = 3, overhead: float | None = None
) -> dict[str, torch.Tensor]:
    """A few SGD steps whose batches and noise come from the global generators (torch,
    numpy, random), recording after every backward pass (before the step) when asked,
    within ``overhead`` (None: no budget, feature visualization at every record)."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = torch.rand(16, 3, SIZE, SIZE) * 2 - 1
    labels = torch.arange(16) % len(CLASSES)
    rec = (  # feature visualizations on (their default layers), one step a record
        Recorder(
            model,
            probes=probe_images(),
            out=tmp_path / "run.zarr",
            class_names=CLASSES,
            featviz_steps=1,
            overhead=overhead,
        )
        if record
        else None
    )
    model.train()
    for _ in range(steps):
        batch = torch.randperm(16)[:8]
        noise = float(np.random.rand()) * 0.01 + random.random() * 0.01
        loss = nn.functional.cross_entropy(model(data[batch] + noise), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        if rec is not None:
            rec.epoch(train_loss=loss)
        optimizer.step()
    if rec is not None:
        rec.close()
    state = {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
    state["training"] = torch.tensor(model.training)
    state["rng"] = torch.get_rng_state()
    state["numpy"] = torch.tensor(np.random.rand())
    state["random"] = torch.tensor(random.random())
    return state


@pytest.mark.parametrize(
    ("make_model", "overhead"),
    [
        (reference_cnn, None),
        (reference_cnn, 0.03),
        (noisy_cnn, None),
        pytest.param(small_resnet, 0.03, marks=pytest.mark.slow),
    ],
    ids=["reference", "reference-budget", "noisy", "resnet18-budget"],
)
def test_recording_changes_nothing(make_model, overhead, tmp_path):
    """Same seed, with and without the recorder: bit-identical weights, BatchNorm running
    statistics, mode and random generators (the recorder runs between backward and step,
    so the gradients must be untouched too); with feature visualization at every record,
    and within the default budget, which adapts what it does to the times it measures."""
    bare = train_run(make_model, tmp_path / "bare", record=False)
    recorded = train_run(make_model, tmp_path / "rec", record=True, overhead=overhead)
    assert bare.keys() == recorded.keys()
    for key in bare:
        assert torch.equal(bare[key], recorded[key]), key
    assert open_run(tmp_path / "rec" / "run.zarr").epochs == 4


class HeldWrites:
    """Holds every background store write until ``release()``: the training loop then
    runs on while the epoch it recorded is still waiting to be written."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = threading.Event()
        write = StoreWriter.write_epoch

        def held(writer: StoreWriter, epoch: int, record: object) -> None:
            assert self.gate.wait(timeout=60), "the test never released the write"
            write(writer, epoch, record)

        monkeypatch.setattr(StoreWriter, "write_epoch", held)

    def release(self) -> None:
        self.gate.set()


def test_epoch_stores_the_kernels_of_its_call_not_of_the_next_step(tmp_path, monkeypatch):
    """The write runs while training goes on: an optimizer step taken before the write
    reads the record must not reach the stored kernels (they are copies, not views)."""
    model = reference_cnn()
    rec = Recorder(
        model,
        probes=probe_images(),
        out=tmp_path / "r.zarr",
        class_names=CLASSES,
        kernel_dtype="float32",  # compared exactly below
    )
    held = HeldWrites(monkeypatch)
    before = model.block1.conv.weight.detach().clone()
    assert rec.epoch(train_loss=1.0) == 1  # returns with the write still held
    with torch.no_grad():
        model.block1.conv.weight.add_(1.0)  # what optimizer.step() does, in place
    held.release()
    rec.close()
    stored = open_run(tmp_path / "r.zarr").kernels("block1.conv", 1)
    np.testing.assert_array_equal(stored, before.numpy())


def test_a_failed_background_write_is_one_line_at_the_next_epoch(tmp_path, monkeypatch):
    """A write that fails on the write thread (a full disk) is raised by the next
    ``epoch()``, as one line naming the store and the epoch; the epochs committed before
    it stay."""
    model = reference_cnn()
    rec = Recorder(model, probes=probe_images(), out=tmp_path / "r.zarr", class_names=CLASSES)
    rec.epoch(train_loss=1.0)
    rec.flush()  # epoch 1 is committed before the disk fills

    async def full_disk(writer: StoreWriter, epoch: int, slots: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(StoreWriter, "_write_slots", full_disk)
    assert rec.epoch(train_loss=0.5) == 2  # the failure is not known yet
    with pytest.raises(StoreError) as failed:
        rec.epoch(train_loss=0.25)
    message = str(failed.value)
    assert "r.zarr: writing epoch 2 failed" in message and "No space left" in message
    assert "\n" not in message
    rec.release()
    assert open_run(tmp_path / "r.zarr").epochs == 2


def test_leaving_on_an_error_keeps_the_epoch_being_written(tmp_path, monkeypatch):
    """A loop that fails while an epoch is still being written (Ctrl-C in the next epoch)
    loses nothing it recorded: the write finishes before the store is released."""
    model = reference_cnn()
    with (
        pytest.raises(KeyboardInterrupt),
        Recorder(model, probes=probe_images(), out=tmp_path / "r.zarr", class_names=CLASSES) as rec,
    ):
        held = HeldWrites(monkeypatch)
        rec.epoch(train_loss=1.0)
        threading.Timer(0.2, held.release).start()
        raise KeyboardInterrupt
    run = open_run(tmp_path / "r.zarr")
    assert run.epochs == 2
    assert run.scalar_metric("train_loss")[1] == 1.0


def test_mixed_modes_are_restored(tmp_path):
    """A loop that keeps a frozen BatchNorm in eval mode while training gets it back so."""
    model = reference_cnn()
    model.train()
    model.block2.norm.eval()
    with Recorder(
        model, probes=probe_images(), out=tmp_path / "r.zarr", class_names=CLASSES
    ) as rec:
        rec.epoch()
    assert model.training and model.block1.norm.training
    assert not model.block2.norm.training


def test_store_holds_what_train_stores(tmp_path):
    """Activations, statistics, kernels, weight change and probe probabilities per epoch;
    the metrics passed and nothing else."""
    model = reference_cnn()
    images = probe_images()
    rec = Recorder(
        model,
        probes=images,
        out=tmp_path / "r.zarr",
        class_names=CLASSES,
        probe_labels=[0, 2],
        kernel_dtype="float32",  # compared exactly below
    )
    with torch.no_grad():
        model.block1.conv.weight.add_(0.5)
    confusion = np.array([[2, 0, 0], [1, 1, 0], [0, 0, 3]])
    assert (
        rec.epoch(val_loss=0.5, val_accuracy=torch.tensor(0.75), confusion=confusion, lr=0.01) == 1
    )
    rec.close()
    run = open_run(tmp_path / "r.zarr")
    assert run.epochs == 2 and list(run.attrs.class_names) == CLASSES
    assert np.array_equal(run.probe_images, images.numpy())
    assert run.probe_labels.tolist() == [0, 2]
    assert [layer.name for layer in run.layers] == [
        "block1.conv",
        "block2.conv",
        "block3.conv",
        "head.hidden.0",
        "head.logits",
    ]
    assert np.array_equal(run.kernels("block1.conv", 1), model.block1.conv.weight.detach().numpy())
    assert run.layer_activations("block1.conv").shape == (2, 2, 4, SIZE, SIZE)
    change = run.weight_change()["block1.conv"]
    assert np.isnan(change[0]) and change[1] > 0 and run.weight_change()["block2.conv"][1] == 0
    assert np.allclose(run.probe_probs().sum(axis=2), 1, atol=1e-5)
    assert np.isnan(run.scalar_metric("train_loss")).all()
    assert run.scalar_metric("val_accuracy")[1] == pytest.approx(0.75)
    assert np.array_equal(run.confusion()[1], confusion)
    assert not run.confusion()[0].any()  # not passed at epoch 0: no images counted
    assert run.attrs.extra_metrics == {"lr": [None, 0.01]}
    stats = run.channel_stats("block1.conv", "max")[1]
    assert np.allclose(stats, run.layer_at("block1.conv", 1).reshape(2, 4, -1).max(2), atol=1e-2)


def test_resume_continues_the_store(tmp_path):
    model = reference_cnn()
    out = tmp_path / "r.zarr"
    with Recorder(model, probes=probe_images(), out=out, class_names=CLASSES) as rec:
        rec.epoch(train_loss=1.0)
    with Recorder(model, probes=probe_images(), out=out, class_names=CLASSES, resume=True) as rec:
        assert rec.epochs_committed == 2
        with torch.no_grad():
            model.get_submodule("block1.conv").weight.mul_(1.5)  # "training" after the resume
        rec.epoch(train_loss=0.5)
    run = open_run(out)
    assert run.scalar_metric("train_loss")[1:].tolist() == [1.0, 0.5]
    # the first epoch after a resume measures its change from the reopened model, not NaN
    assert run.weight_change()["block1.conv"][2] == pytest.approx(0.5, rel=1e-4)


def test_resume_refuses_other_probes_and_keeps_the_store(tmp_path):
    out = tmp_path / "r.zarr"
    Recorder(reference_cnn(), probes=probe_images(), out=out, class_names=CLASSES).close()
    with pytest.raises(StoreError, match="other probe images"):
        Recorder(
            reference_cnn(), probes=probe_images(seed=1), out=out, class_names=CLASSES, resume=True
        )
    assert open_run(out).epochs == 1


def test_an_existing_store_is_never_overwritten(tmp_path):
    out = tmp_path / "r.zarr"
    Recorder(reference_cnn(), probes=probe_images(), out=out, class_names=CLASSES).close()
    with pytest.raises(StoreError, match="resume=True"):
        Recorder(reference_cnn(), probes=probe_images(), out=out, class_names=CLASSES)
    assert open_run(out).epochs == 1


def test_epoch_after_close_is_one_line(tmp_path):
    rec = Recorder(reference_cnn(), probes=probe_images(), out=tmp_path / "r.zarr")
    rec.close()
    with pytest.raises(RecorderClosedError, match="closed; create Recorder") as error:
        rec.epoch(train_loss=1.0)
    assert "\n" not in str(error.value)
    assert open_run(tmp_path / "r.zarr").epochs == 1


def test_two_recorders_on_one_store_are_refused(tmp_path):
    out = tmp_path / "r.zarr"
    first = Recorder(reference_cnn(), probes=probe_images(), out=out, class_names=CLASSES)
    with pytest.raises(StoreError, match="another process is writing"):
        Recorder(reference_cnn(), probes=probe_images(), out=out, class_names=CLASSES, resume=True)
    first.epoch(train_loss=1.0)  # the first one still records
    first.close()
    assert open_run(out).epochs == 2


def test_bad_metrics_are_one_line_and_lose_nothing(tmp_path):
    rec = Recorder(reference_cnn(), probes=probe_images(), out=tmp_path / "r.zarr")
    with pytest.raises(OptionError, match=r"confusion= has shape \(2, 2\)"):
        rec.epoch(confusion=np.zeros((2, 2), np.int64))
    with pytest.raises(OptionError, match="metric lr='fast' is not a number"):
        rec.epoch(lr="fast")
    rec.epoch(train_loss=1.0)
    rec.close()
    assert open_run(tmp_path / "r.zarr").epochs == 2


def test_a_model_without_conv_layers_is_refused_before_any_store(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 3))
    with pytest.raises(LayerChoiceError, match="no Conv2d layer"):
        Recorder(model, probes=probe_images(), out=tmp_path / "r.zarr")
    assert not (tmp_path / "r.zarr").exists()


def test_a_model_that_returns_no_logits_is_refused(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(NetlapseError, match="logits"):
        Recorder(model, probes=probe_images(), out=tmp_path / "r.zarr")


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.conv(x).mean(dim=(2, 3))
        return pooled, pooled


def test_a_model_that_returns_a_tuple_is_refused(tmp_path):
    with pytest.raises(NetlapseError, match="returns no tensor; netlapse records classifiers"):
        Recorder(TwoHeads(), probes=probe_images(), out=tmp_path / "r.zarr")
    assert not (tmp_path / "r.zarr").exists()


def test_class_names_must_match_the_logits(tmp_path):
    with pytest.raises(NetlapseError, match="class_names has 2 names but the model returns 3"):
        Recorder(
            reference_cnn(), probes=probe_images(), out=tmp_path / "r.zarr", class_names=["x", "y"]
        )


def test_autocast_activations_are_stored_in_the_store_dtype(tmp_path):
    model = reference_cnn()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rec = Recorder(
            model, probes=probe_images(), out=tmp_path / "r.zarr", activation_dtype="float32"
        )
        rec.epoch()
    rec.close()
    run = open_run(tmp_path / "r.zarr")
    assert run.layer_activations("block2.conv").dtype == np.float32
    assert np.isfinite(run.layer_activations("block2.conv")).all()


def test_channels_last_model_records_the_same_activations(tmp_path):
    images = probe_images()
    torch.manual_seed(0)
    plain = reference_cnn()
    wide = reference_cnn()
    wide.load_state_dict(plain.state_dict())
    wide = wide.to(memory_format=torch.channels_last)
    Recorder(plain, probes=images, out=tmp_path / "a.zarr", activation_dtype="float32").close()
    Recorder(wide, probes=images, out=tmp_path / "b.zarr", activation_dtype="float32").close()
    a, b = open_run(tmp_path / "a.zarr"), open_run(tmp_path / "b.zarr")
    for layer in a.layers:
        assert np.allclose(
            a.layer_activations(layer.name), b.layer_activations(layer.name), atol=1e-4
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_records_and_stays_on_its_device(tmp_path):
    model = small_resnet().cuda()
    with Recorder(model, probes=probe_images(), out=tmp_path / "r.zarr") as rec:
        rec.epoch()
    assert next(model.parameters()).is_cuda
    assert open_run(tmp_path / "r.zarr").epochs == 2


def test_mobilenet_depthwise_kernels_and_chosen_layers(tmp_path):
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=len(CLASSES))
    layers = ["features.1.block.?", "classifier.3"]  # fnmatch: "*" would cross dots too
    with Recorder(model, probes=probe_images(), out=tmp_path / "m.zarr", layers=layers) as rec:
        rec.epoch(val_accuracy=0.5)
    run = open_run(tmp_path / "m.zarr")
    names = [layer.name for layer in run.layers]
    assert names == [
        "features.1.block.0",
        "features.1.block.1",
        "features.1.block.2",
        "classifier.3",
    ]
    depthwise = run.layer("features.1.block.0")
    assert depthwise.groups == 16 and run.kernels(depthwise.name).shape == (2, 16, 1, 3, 3)
    assert run.layer("features.1.block.1").kind == "block"  # squeeze-and-excitation
    assert run.layer_activations("features.1.block.1").shape == (2, 2, 16, 8, 8)


@pytest.mark.slow
def test_mobilenet_with_every_default_layer(tmp_path):
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=len(CLASSES))
    with Recorder(model, probes=probe_images(), out=tmp_path / "m.zarr") as rec:
        rec.epoch()
    run = open_run(tmp_path / "m.zarr")
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert {layer.name for layer in run.layers} >= set(convs)
    assert run.epochs == 2 and run.layers[-1].name == "classifier.3"


def test_import_generator_stays_light_and_recorder_is_exported():
    """``import generator`` (every CLI start) does not load torch; ``Recorder`` does."""
    import subprocess
    import sys

    code = (
        "import sys, generator; assert 'torch' not in sys.modules; "
        "from generator import Recorder; assert 'torch' in sys.modules; print(Recorder.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Recorder"


def test_extra_metrics_continue_across_a_resume(tmp_path):
    out = tmp_path / "r.zarr"
    with Recorder(reference_cnn(), probes=probe_images(), out=out) as rec:
        rec.epoch(lr=0.1)
    with Recorder(reference_cnn(), probes=probe_images(), out=out, resume=True) as rec:
        rec.epoch(momentum=0.9)
    assert open_run(out).attrs.extra_metrics == {
        "lr": [None, 0.1, None],
        "momentum": [None, None, 0.9],
    }


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("class_names", "abc", "class_names='abc' is one string"),
        ("probe_labels", [7, 0], "probe_labels holds 7"),
        ("probe_labels", [-3, 0], "probe_labels holds -3"),
        ("probe_labels", [2**40, 0], f"probe_labels holds {2**40}"),
        ("probe_labels", [0.5, 1], "probe_labels=.*not class indices"),
        ("probe_labels", [2**70, 0], "probe_labels=.*not class indices"),
    ],
)
def test_bad_recorder_arguments_are_one_line_before_anything_is_written(
    tmp_path, option, value, words
):
    """The reference CNN has 3 classes: labels outside 0..2 (or -1) and a string of
    class names are refused by name, and no store is made."""
    with pytest.raises(OptionError, match=words):
        Recorder(reference_cnn(), probes=probe_images(), out=tmp_path / "r.zarr", **{option: value})
    assert not (tmp_path / "r.zarr").exists()


def test_out_of_range_metrics_are_one_line_and_earlier_epochs_stay(tmp_path, caplog):
    """Negative counts and accuracies outside [0, 1] are refused before the epoch is
    written; the epochs before it stay. A diverged loss (NaN, -inf, 1e308: beyond float32)
    is stored as NaN or +-inf and said in the log, never as a RuntimeWarning, and never
    stops the user's training."""
    out = tmp_path / "r.zarr"
    rec = Recorder(reference_cnn(), probes=probe_images(), out=out)
    negative = np.array([[1, -2, 0], [0, 1, 0], [0, 0, 1]], np.int64)
    bad = [
        ({"confusion": negative}, "confusion= holds -2"),
        ({"val_accuracy": -3.0}, r"val_accuracy=-3.0 is outside \[0, 1\]"),
        ({"train_accuracy": 2.0}, r"train_accuracy=2.0 is outside \[0, 1\]"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks
        for metrics, words in bad:
            with pytest.raises(OptionError, match=words):
                rec.epoch(**metrics)
        rec.epoch(val_accuracy=1.0, lr=3e38)
        rec.epoch(train_loss=1e308, val_loss=float("nan"), grad=float("-inf"))
    rec.close()
    run = open_run(out)
    assert run.epochs == 3
    assert run.scalar_metric("train_loss")[2] == np.inf
    assert np.isnan(run.scalar_metric("val_loss")[2])
    assert "train_loss=1e+308 is not a finite float32: stored as inf" in caplog.text
