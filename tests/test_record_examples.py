"""Dataset examples: each conv channel's top-k pool images, as stored and as re-measured."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from generator import Recorder
from generator.__main__ import main
from generator.model import NetlapseCNN
from generator.record.examples import (
    ExamplePoolError,
    prepare_pool,
    split_pool,
    top_examples,
)
from generator.record.layers import describe, trace
from generator.store import StoreWriter, open_run
from generator.train.checkpoint import checkpoint_path, load_checkpoint

CLASSES = ["a", "b", "c"]
SIZE = 32


def images(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return NetlapseCNN(len(CLASSES), SIZE, channels=(4, 6), hidden=8)


def conv_layers(model: nn.Module) -> list:
    found = trace(model, torch.zeros(1, 3, SIZE, SIZE))
    return [describe(model, path, found) for path in ("block1.conv", "block2.conv")]


def brute_force(model: nn.Module, pool: torch.Tensor, module: str, k: int) -> dict:
    """The top-k by a whole-pool pass and numpy: value descending, then pool index; the
    position is the first maximum in row-major order."""
    kept = {}

    def keep(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        kept["out"] = out.detach().numpy().copy()

    handle = model.get_submodule(module).register_forward_hook(keep)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(pool)
    model.train(was_training)
    handle.remove()
    out = kept["out"]  # (N, C, H, W)
    n, c, h, w = out.shape
    flat = out.reshape(n, c, h * w)
    value, where = flat.max(axis=2), flat.argmax(axis=2)  # (N, C)
    index = np.empty((c, k), np.int64)
    for channel in range(c):
        index[channel] = np.lexsort((np.arange(n), -value[:, channel]))[:k]
    channels = np.arange(c)[:, None]
    spot = where[index, channels]
    return {
        "index": index,
        "position": np.stack([spot // w, spot % w], axis=-1),
        "value": value[index, channels],
    }


def assert_same_top(found: dict, expected: dict) -> None:
    np.testing.assert_array_equal(found["index"], expected["index"])
    np.testing.assert_array_equal(found["position"], expected["position"])
    np.testing.assert_allclose(found["value"], expected["value"], rtol=1e-5, atol=1e-6)


def test_streamed_top_k_equals_one_pass_over_the_whole_pool():
    """Batches of 3 merged into a running top-k give what one pass over all 20 does."""
    model = tiny_cnn()
    layers = conv_layers(model)
    pool = prepare_pool(images(20, 1), input_size=SIZE, top_k=5)
    found = top_examples(model, pool, layers, batch=3)
    for spec in layers:
        assert_same_top(found[spec.name], brute_force(model, pool.inputs, spec.module, 5))
        assert found[spec.name]["index"].dtype == np.int32


def test_the_stored_top_k_of_every_epoch_equals_a_fresh_pass_of_that_epochs_model(tmp_path):
    model = tiny_cnn()
    pool = images(20, 1)
    states = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    data, labels = images(8, 2).float() / 255, torch.arange(8) % 3
    with Recorder(
        model,
        probes=images(2, 0),
        out=tmp_path / "run.zarr",
        class_names=CLASSES,
        example_pool=pool,
        example_top_k=4,
        overhead=None,  # every epoch's examples found: compared below
    ) as rec:
        states.append(copy.deepcopy(model.state_dict()))
        for _ in range(2):
            loss = nn.functional.cross_entropy(model(data), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            rec.epoch()
            states.append(copy.deepcopy(model.state_dict()))
    run = open_run(tmp_path / "run.zarr")
    assert run.attrs.examples.pool == 20 and run.attrs.examples.top_k == 4
    np.testing.assert_array_equal(run.example_images, pool.permute(0, 2, 3, 1).numpy())
    inputs = prepare_pool(pool, input_size=SIZE).inputs
    stored = run.examples("block2.conv")
    assert stored.index.shape == (3, 6, 4) and stored.position.shape == (3, 6, 4, 2)
    assert not np.array_equal(stored.index[0], stored.index[2])  # training moved them
    fresh = tiny_cnn()
    for epoch, state in enumerate(states):
        fresh.load_state_dict(state)
        expected = brute_force(fresh, inputs, "block2.conv", 4)
        assert_same_top({f: getattr(stored, f)[epoch] for f in expected}, expected)


def test_a_dead_channel_ranks_its_equal_maxima_by_pool_index():
    model = tiny_cnn()
    with torch.no_grad():
        model.block1.conv.weight[2] = 0
        model.block1.conv.bias[2] = 0
    pool = prepare_pool(images(10, 3), input_size=SIZE, top_k=4)
    found = top_examples(model, pool, conv_layers(model), batch=4)["block1.conv"]
    np.testing.assert_array_equal(found["index"][2], [0, 1, 2, 3])
    np.testing.assert_array_equal(found["position"][2], np.zeros((4, 2)))


def test_recording_with_the_pool_leaves_training_unchanged(tmp_path):
    """Same seeds, same steps: a run recorded with the example pool ends with the same
    weights as one recorded without it (eval mode, no_grad, generators restored)."""

    def trained(pool: torch.Tensor | None, out: str) -> dict:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.Dropout(0.5),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 3),
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        data, labels = images(8, 4).float() / 255, torch.arange(8) % 3
        model.train()
        with Recorder(
            model,
            probes=images(2, 0),
            out=tmp_path / out,
            class_names=CLASSES,
            example_pool=pool,
        ) as rec:
            for _ in range(3):
                loss = nn.functional.cross_entropy(model(data), labels)
                optimizer.zero_grad()
                loss.backward()
                rec.epoch()
                optimizer.step()
        assert model.training
        return {k: v.clone() for k, v in model.state_dict().items()}

    with_pool, without = trained(images(12, 5), "a.zarr"), trained(None, "b.zarr")
    for key, value in without.items():
        assert torch.equal(with_pool[key], value), key
    assert open_run(tmp_path / "a.zarr").attrs.examples
    assert not open_run(tmp_path / "b.zarr").attrs.examples


def test_a_resumed_recorder_keeps_searching_the_stored_pool(tmp_path):
    model, pool = tiny_cnn(), images(12, 6)
    args = dict(probes=images(2, 0), out=tmp_path / "run.zarr", class_names=CLASSES)
    Recorder(model, **args, example_pool=pool, example_top_k=3).close()
    with Recorder(model, **args, resume=True) as rec:  # the pool comes from the store
        rec.epoch()
    run = open_run(tmp_path / "run.zarr")
    assert run.epochs == 2
    np.testing.assert_array_equal(
        run.examples("block1.conv").index[1], run.examples("block1.conv").index[0]
    )
    with pytest.raises(ExamplePoolError, match="differs from the pool"):
        Recorder(model, **args, resume=True, example_pool=images(12, 7), example_top_k=3)


@pytest.mark.parametrize(
    ("pool", "top_k", "message"),
    [
        (torch.zeros(4, 3, 16, 16, dtype=torch.uint8), 9, "16 px but the probes are 32 px"),
        (torch.zeros(4, 1, SIZE, SIZE, dtype=torch.uint8), 9, "example_pool: pool images"),
        (torch.zeros(4, 3, SIZE, SIZE, dtype=torch.uint8), 0, "example_top_k=0"),
        ("pool.png", 9, "example_pool"),
    ],
)
def test_bad_pools_are_one_line(tmp_path, pool, top_k, message):
    with pytest.raises(ExamplePoolError, match=message) as error:
        Recorder(
            tiny_cnn(),
            probes=images(2, 0),
            out=tmp_path / "run.zarr",
            class_names=CLASSES,
            example_pool=pool,
            example_top_k=top_k,
        )
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run.zarr").exists()


def test_a_store_with_examples_refuses_an_epoch_without_them(tmp_path):
    Recorder(
        tiny_cnn(),
        probes=images(2, 0),
        out=tmp_path / "run.zarr",
        class_names=CLASSES,
        example_pool=images(5, 1),
    ).close()
    writer = StoreWriter.open_for_resume(tmp_path / "run.zarr")
    record = copy.copy(_epoch_zero(tmp_path / "run.zarr"))
    with pytest.raises(Exception, match="keeps dataset examples"):
        writer.write_epoch(1, record)
    writer.close()
    assert open_run(tmp_path / "run.zarr").epochs == 1


def _epoch_zero(store):
    """Epoch 0 of ``store`` as a record without its dataset examples."""
    from generator.store import EpochRecord

    run = open_run(store)
    return EpochRecord(
        activations={s.name: run.layer_at(s.name, 0) for s in run.layers},
        channel_stats={
            s.name: {
                f: run.channel_stats(s.name, f)[0]
                for f in ("min", "max", "mean", "abs_mean", "abs_max")
            }
            for s in run.layers
        },
        kernels={s.name: run.kernels(s.name, 0) for s in run.layers if s.is_conv},
        weight_change={},
        probe_probs=run.probe_probs()[0],
    )


class Split:
    """A dataset of uint8 images with targets and sample paths, as ImageFolder has."""

    def __init__(self, n: int) -> None:
        self.targets = [i % 3 for i in range(n)]
        self.samples = [(f"/data/{t}/{i}.png", t) for i, t in enumerate(self.targets)]
        self.root = "/data"
        self.pictures = images(n, 8)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.pictures[i], self.targets[i]


def test_train_takes_the_pool_from_the_validation_split_spread_over_classes():
    dataset = Split(30)
    split = np.arange(10, 30)
    pool = split_pool(dataset, split, 6)
    assert sorted(pool.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert all(source.split("/")[1].removesuffix(".png").isdigit() for source in pool.sources)
    assert all(10 <= int(s.split("/")[1][:-4]) < 30 for s in pool.sources)
    assert split_pool(dataset, split, 0) is None
    assert len(split_pool(dataset, split, None).labels) == 20  # default: the whole split


def test_an_example_pool_larger_than_the_validation_split_is_one_line(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("NETLAPSE_CACHE", str(tmp_path / "cache"))
    code = main(
        [
            "-q",
            "train",
            "--out",
            str(tmp_path / "run.zarr"),
            "--input-size",
            "32",
            "--demo-per-class",
            "5",
            "--probes",
            "2",
            "--channels",
            "4,4",
            "--epochs",
            "1",
            "--example-pool",
            "500",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code != 0
    line = err.splitlines()[-1]
    assert line.startswith("netlapse train: error: --example-pool 500: the validation split")
    assert "Traceback" not in err
    assert not (tmp_path / "run.zarr").exists()


@pytest.mark.slow
def test_trains_top_k_equals_a_fresh_pass_of_its_checkpoint(trained_run):
    """The shared demo run keeps examples by default; its newest checkpoint, run over the
    stored pool, gives the stored top-k of that epoch."""
    run = open_run(trained_run)
    assert run.attrs.examples
    epoch = run.epochs - 1
    state = load_checkpoint(checkpoint_path(trained_run, epoch))
    training = run.attrs.training
    model = NetlapseCNN(
        len(run.attrs.class_names),
        run.attrs.input_size,
        training["channels"],
        training["kernel_size"],
    )
    model.load_state_dict(state["model"])
    inputs = prepare_pool(
        torch.from_numpy(run.example_images).permute(0, 3, 1, 2), input_size=run.attrs.input_size
    ).inputs
    stored = run.examples("block3")
    expected = brute_force(model, inputs, "block3", run.attrs.examples.top_k)
    assert_same_top({f: getattr(stored, f)[epoch] for f in expected}, expected)


def test_a_damaged_examples_attribute_or_array_is_refused_in_one_line(tmp_path):
    import shutil

    import zarr

    from generator.errors import StoreError
    from tests.conftest import make_store

    make_store(tmp_path / "run.zarr", examples=True)
    assert open_run(tmp_path / "run.zarr").examples("block2").index.shape == (3, 6, 3)
    group = zarr.open_group(str(tmp_path / "run.zarr"), mode="r+")
    settings = group.attrs["examples"]
    group.attrs["examples"] = {**settings, "top_k": 9}  # more than the pool of 5
    with pytest.raises(StoreError, match="examples needs a pool of at least 1 image and a top_k"):
        open_run(tmp_path / "run.zarr")
    group.attrs["examples"] = settings
    shutil.rmtree(tmp_path / "run.zarr" / "examples" / "block1" / "position")
    with pytest.raises(StoreError, match="examples/block1/position is missing"):
        open_run(tmp_path / "run.zarr")
