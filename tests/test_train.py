"""End-to-end training: the real CLI on generated demo data, then the store it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from PIL import Image

from generator.__main__ import main
from generator.config import TrainConfig
from generator.data import to_model_input
from generator.model import NetlapseCNN
from generator.store import open_run
from generator.train import evaluate, split_indices
from generator.train.checkpoint import checkpoint_path, load_checkpoint
from generator.train.loop import _train_one_epoch
from generator.train.session import start_session
from tests.conftest import TRAINED_RUN_ARGS, TRAINED_RUN_EPOCHS, copy_trained_run

SMALL = list(TRAINED_RUN_ARGS)


def train(out: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    monkeypatch.setenv("NETLAPSE_CACHE", str(cache))
    return main(["-q", "train", "--out", str(out), *SMALL, *extra])


@pytest.fixture(scope="module")
def two_epoch_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's shared run (SMALL, 2 epochs), copied: tests here train at it."""
    assert TRAINED_RUN_EPOCHS == 2
    return copy_trained_run(trained_run, tmp_path_factory.mktemp("run"))


@pytest.mark.slow
def test_store_has_every_layer_and_epoch(two_epoch_run: Path) -> None:
    group = zarr.open_group(str(two_epoch_run), mode="r")
    assert group.attrs["epochs_committed"] == 3
    names = [layer["name"] for layer in group.attrs["layers"]]
    assert names == [*(f"block{i}" for i in range(1, 9)), "hidden", "logits"]
    for layer in group.attrs["layers"]:
        array = group[f"activations/{layer['name']}"]
        assert array.shape == (3, 4, *layer["shape"])
        assert array.dtype == np.float16
        if layer["kind"] == "conv":
            assert array.chunks == (1, 4, *layer["shape"])  # the 4 probes fit in 1 MB
            assert group[f"kernels/{layer['name']}"].shape == (3, *layer["kernel_shape"])
            assert group[f"kernels/{layer['name']}"].dtype == np.float32
    assert group["activations/block1"].shape == (3, 4, 16, 64, 64)
    assert group["probes/images"].shape == (4, 3, 64, 64)
    assert group.attrs["input_size"] == 64
    assert group.attrs["training"]["epochs"] == 2
    assert len(group.attrs["class_names"]) >= 4
    assert group["metrics/confusion"].shape[0] == 3
    assert np.isnan(group["metrics/train_loss"][0]) and not np.isnan(group["metrics/val_loss"][0])
    changed = [layer["name"] for layer in group.attrs["layers"] if layer["params"]]
    assert np.all(group["metrics/weight_change"][1:3, changed.index("block1")] > 0)


@pytest.mark.slow
def test_probes_cover_several_classes(two_epoch_run: Path) -> None:
    run = open_run(two_epoch_run)
    assert len(set(run.probe_labels.tolist())) == 4


@pytest.mark.slow
def test_stored_activations_equal_a_fresh_forward_of_the_checkpoint(two_epoch_run: Path) -> None:
    run = open_run(two_epoch_run)
    model = NetlapseCNN(len(run.attrs.class_names), 64)
    model.load_state_dict(load_checkpoint(checkpoint_path(two_epoch_run, 2))["model"])
    model.eval()
    inputs = to_model_input(torch.from_numpy(run.probe_images))
    with torch.no_grad():
        block1 = model.block1(inputs)
        logits = model(inputs)
    np.testing.assert_allclose(run.layer_at("block1", 2), block1.numpy(), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(run.layer_at("logits", 2), logits.numpy(), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(run.probe_probs()[2], torch.softmax(logits, 1).numpy(), atol=1e-5)
    expected = model.block3.conv.weight.detach().numpy()
    np.testing.assert_array_equal(run.kernels("block3")[2], expected)


@pytest.mark.slow
def test_same_seed_gives_an_identical_store_and_resume_continues_it(
    tmp_path: Path, demo_cache: Path, two_epoch_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "resumed.zarr"
    assert train(out, demo_cache, monkeypatch, "--epochs", "1") == 0
    assert open_run(out).epochs == 2
    assert train(out, demo_cache, monkeypatch, "--epochs", "2", "--resume") == 0
    resumed, straight = open_run(out), open_run(two_epoch_run)
    assert resumed.epochs == 3
    for layer in straight.layers:
        np.testing.assert_array_equal(
            resumed.layer_activations(layer.name), straight.layer_activations(layer.name)
        )
    np.testing.assert_array_equal(resumed.confusion(), straight.confusion())


@pytest.mark.slow
def test_out_on_an_existing_store_is_refused(
    two_epoch_run: Path,
    demo_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    before = (two_epoch_run / "zarr.json").read_bytes()
    assert train(two_epoch_run, demo_cache, monkeypatch, "--epochs", "1") == 2
    assert "already exists" in capsys.readouterr().err
    assert (two_epoch_run / "zarr.json").read_bytes() == before


@pytest.mark.slow
def test_resume_with_another_input_size_is_refused(
    two_epoch_run: Path,
    demo_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("NETLAPSE_CACHE", str(demo_cache))
    code = main(
        [
            "-q",
            "train",
            "--out",
            str(two_epoch_run),
            "--input-size",
            "96",
            "--demo-per-class",
            "10",
            "--resume",
            "--epochs",
            "3",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--resume with a different" in err and "Traceback" not in err


def test_split_is_stratified_and_seeded() -> None:
    labels = np.repeat(np.arange(3), 10)
    train_idx, val_idx = split_indices(labels, 0.2, seed=1)
    assert len(val_idx) == 6 and set(labels[val_idx]) == {0, 1, 2}
    assert not set(train_idx) & set(val_idx)
    again = split_indices(labels, 0.2, seed=1)
    np.testing.assert_array_equal(again[1], val_idx)
    assert not np.array_equal(split_indices(labels, 0.2, seed=2)[1], val_idx)


@pytest.mark.slow
def test_resume_with_more_epochs_records_the_change(
    tmp_path: Path, demo_cache: Path, two_epoch_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8.3: ``--resume --epochs 2`` on a 1-epoch run left ``training.epochs`` at 1."""
    out = tmp_path / "extended.zarr"
    assert train(out, demo_cache, monkeypatch, "--epochs", "1") == 0
    assert train(out, demo_cache, monkeypatch, "--epochs", "2", "--resume") == 0
    training = open_run(out).attrs.training
    assert training["epochs"] == 2
    assert training["resumes"] == [{"first_epoch": 2, "changed": {"epochs": {"from": 1, "to": 2}}}]
    straight = open_run(two_epoch_run)
    assert {k: v for k, v in training.items() if k != "resumes"} == straight.attrs.training
    for layer in straight.layers:  # and the numbers are the uninterrupted run's
        np.testing.assert_array_equal(
            open_run(out).layer_activations(layer.name), straight.layer_activations(layer.name)
        )
    assert train(out, demo_cache, monkeypatch, "--epochs", "2", "--resume") == 0
    assert len(open_run(out).attrs.training["resumes"]) == 1  # a plain resume changes nothing


def hostile_dataset(root: Path) -> Path:
    """Two classes whose folder names are not valid UTF-8 / hold a terminal escape."""
    rng = np.random.default_rng(0)
    for name in (b"caf\xe9", b"red\x1b[31m\x07"):
        folder = os.fsencode(root) + b"/" + name
        os.makedirs(folder)
        for i in range(4):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.fsdecode(folder + f"/{i}.png".encode()))
    return root


@pytest.mark.slow
def test_hostile_class_names_are_stored_as_utf8_and_shown_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8.7/8.10: a non-UTF-8 folder name made ``info`` fail under a strict UTF-8
    stdout, and a class name's control characters reached the terminal raw."""
    data, out = hostile_dataset(tmp_path / "data"), tmp_path / "run.zarr"
    monkeypatch.setenv("NETLAPSE_CACHE", str(tmp_path / "cache"))
    tiny = ["--input-size", "16", "--channels", "4,4", "--batch-size", "4", "--probes", "2"]
    assert (
        main(["-q", "train", "--out", str(out), "--data", str(data), *tiny, "--epochs", "1"]) == 0
    )
    attrs = json.loads((out / "zarr.json").read_bytes().decode("utf-8", "strict"))["attributes"]
    assert attrs["class_names"] == ["caf\\xe9", "red\x1b[31m\x07"]
    for text in (*attrs["class_names"], *attrs["probe_sources"]):
        text.encode("utf-8", "strict")  # no lone surrogates anywhere
    shown = subprocess.run(
        [sys.executable, "-m", "generator", "info", str(out)],
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
        capture_output=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr.decode(errors="replace")
    text = shown.stdout.decode("utf-8", "strict")
    assert "caf\\xe9" in text and "red\\x1b[31m\\x07" in text
    assert not any(c in text for c in "\x1b\x07")


class _NanLoss(torch.nn.Module):
    """A loss that turns non-finite, as a diverging run's does (cannot be reached with a
    legal --lr on a few demo images, so it is stood in for)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits.sum() * float("nan")


@pytest.mark.slow
def test_a_non_finite_loss_stops_training_and_keeps_the_committed_epochs(
    tmp_path: Path, demo_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "nan.zarr"
    monkeypatch.setattr("generator.train.loop.nn.CrossEntropyLoss", _NanLoss)
    assert train(out, demo_cache, monkeypatch, "--epochs", "2") == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "epoch 1, batch 0" in line and "smaller --lr" in line and "Traceback" not in line
    assert zarr.open_group(str(out), mode="r").attrs["epochs_committed"] == 1


# -- any model (issue 10.2) and recording changes nothing (issue 10.1) -----------------------
TINY = ["--input-size", "64", "--demo-per-class", "4", "--batch-size", "8", "--probes", "2"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "block"), [("resnet18", "layer1.0"), ("mobilenet_v3_small", "features.1")]
)
def test_train_any_torchvision_classifier(
    name: str,
    block: str,
    tmp_path: Path,
    demo_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / f"{name}.zarr"
    monkeypatch.setenv("NETLAPSE_CACHE", str(demo_cache))
    argv = ["-q", "train", "--out", str(out), *TINY, "--model", name, "--epochs", "2"]
    assert main(argv) == 0
    run = open_run(out)
    assert run.epochs == 3 and run.attrs.training["model"] == name
    names = [layer.name for layer in run.layers]
    assert block in names and names[-1] in ("fc", "classifier.3")
    conv = next(layer for layer in run.layers if layer.kernel_shape is not None)
    assert run.kernels(conv.name).shape == (3, *conv.kernel_shape)
    assert np.isfinite(run.weight_change()[conv.name][1:]).all()
    assert run.layer_activations(block).shape[:2] == (3, 2)
    # the model is part of the run: --resume with another one is refused, nothing lost
    resume = ["-q", "train", "--out", str(out), *TINY, "--epochs", "3", "--resume"]
    assert main([*resume, "--model", "reference"]) == 2
    assert "--resume with a different --model (reference)" in capsys.readouterr().err
    assert open_run(out).epochs == 3


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("resnet1800", "--model resnet1800: not a torchvision classifier; list the names"),
        ("fasterrcnn_resnet50_fpn", "not a torchvision classifier"),
        ("generator.model:min_input_size", "must accept num_classes="),
    ],
)
def test_a_bad_model_is_one_line_before_any_store(
    model: str,
    message: str,
    tmp_path: Path,
    demo_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "bad.zarr"
    monkeypatch.setenv("NETLAPSE_CACHE", str(demo_cache))
    assert main(["-q", "train", "--out", str(out), *TINY, "--model", model]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_a_too_small_input_size_for_the_model_is_one_line(
    tmp_path: Path, demo_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "small.zarr"
    monkeypatch.setenv("NETLAPSE_CACHE", str(demo_cache))
    small = ["--input-size", "64", "--demo-per-class", "4", "--probes", "2"]
    assert main(["-q", "train", "--out", str(out), *small, "--model", "inception_v3"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--model inception_v3 cannot run on --input-size 64" in line
    assert "larger --input-size" in line and not out.exists()


def train_without_recording(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The built-in loop's training, epoch by epoch, with no Recorder anywhere."""
    session = start_session(config)
    evaluate(session)
    for epoch in range(1, config.epochs + 1):
        _train_one_epoch(session, epoch)
        evaluate(session)
    return session.model.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_args",
    [["--channels", "4,8,8", "--input-size", "32"], ["--model", "resnet18", "--input-size", "32"]],
    ids=["reference", "resnet18"],
)
def test_recording_in_train_changes_nothing(
    model_args: list[str], tmp_path: Path, demo_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same seed, with and without recording: bit-identical weights and BatchNorm
    statistics after two epochs of the built-in loop."""
    out = tmp_path / "run.zarr"
    monkeypatch.setenv("NETLAPSE_CACHE", str(demo_cache))
    settings = ["--demo-per-class", "4", "--batch-size", "8", "--probes", "2", "--epochs", "2"]
    settings += ["--device", "cpu", "--featviz-steps", "1"]  # featviz runs, one step a record
    assert main(["-q", "train", "--out", str(out), *settings, *model_args]) == 0
    recorded = load_checkpoint(checkpoint_path(out, 2))["model"]
    flags = dict(zip(model_args[::2], model_args[1::2], strict=True))
    config = TrainConfig(
        out=tmp_path / "unused.zarr",
        demo_per_class=4,
        batch_size=8,
        epochs=2,
        input_size=int(flags["--input-size"]),
        model=flags.get("--model", "reference"),
        channels=tuple(int(c) for c in flags.get("--channels", "4,8,8").split(",")),
        cache_dir=demo_cache,
        device="cpu",
    )
    bare = train_without_recording(config)
    assert bare.keys() == recorded.keys()
    for key, value in bare.items():
        assert torch.equal(value, recorded[key]), key
