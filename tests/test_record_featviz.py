"""Feature visualizations at record time: they find what a channel detects, they are
reproducible, they leave the model exactly as it was, and bad layer choices are one line."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from generator import Recorder
from generator.__main__ import main
from generator.config import TrainConfig
from generator.data import to_model_input
from generator.errors import OptionError
from generator.model import NetlapseCNN
from generator.record.featviz import (
    DEFAULT_STEPS,
    FeatureVisualizer,
    FeatvizLayerError,
    FeatvizSettings,
    affine_input,
    channel_means,
    choose_layers,
    from_uint8,
    image_to_spectrum,
    spectrum_scale,
    spectrum_to_image,
)
from generator.store import FeatvizSpec, LayerSpec, open_run

SIZE = 32
RED, BLUE = 0, 2


class PlantedDetectors(nn.Module):
    """A conv whose two channels detect red and blue (fixed 1x1 kernels), then BatchNorm,
    a classifier head and a second conv: a model whose answer we know."""

    def __init__(self) -> None:
        super().__init__()
        self.detect = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.detect.weight.zero_()
            self.detect.weight[0, :, 0, 0] = torch.tensor([1.0, -0.5, -0.5])  # red
            self.detect.weight[1, :, 0, 0] = torch.tensor([-0.5, -0.5, 1.0])  # blue
        self.norm = nn.BatchNorm2d(2)
        self.edges = nn.Conv2d(2, 3, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.edges(self.norm(torch.relu(self.detect(x)))))


def visualizer(model: PlantedDetectors, *, steps: int = 8, seed: int = 0) -> FeatureVisualizer:
    spec = FeatvizSpec(
        size=SIZE, channels={"detect": 2}, steps=steps, first_steps=4 * steps, seed=seed
    )
    return FeatureVisualizer(
        model, spec, {"detect": model.detect}, to_input=affine_input(to_model_input)
    )


def mean_activation(model: PlantedDetectors, images: np.ndarray) -> np.ndarray:
    """(C,) channel c's mean response to image c (uint8 (C, S, S, 3))."""
    inputs = to_model_input(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    with torch.no_grad():
        return channel_means(model, model.detect, inputs, len(images)).numpy()


def test_each_channel_gets_the_colour_it_detects():
    model = PlantedDetectors().eval()
    images = visualizer(model).visualize(0)["detect"]
    colour = images.reshape(2, -1, 3).mean(axis=1)
    assert colour[0, RED] > colour[0, BLUE] + 30  # the red detector's image is red
    assert colour[1, BLUE] > colour[1, RED] + 30  # the blue detector's image is blue


def test_the_image_drives_its_channel_more_than_noise_or_the_start():
    model = PlantedDetectors().eval()
    images = visualizer(model).visualize(0)["detect"]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, images.shape, dtype=np.uint8)
    grey = np.full(images.shape, 128, np.uint8)  # the near-grey start
    found = mean_activation(model, images)
    assert np.all(found > mean_activation(model, noise) + 0.1)
    assert np.all(found > mean_activation(model, grey) + 0.1)


def test_a_warm_started_epoch_continues_from_the_last_images():
    model = PlantedDetectors().eval()
    fv = visualizer(model)
    first = fv.visualize(0)["detect"]
    second = fv.visualize(1)["detect"]
    assert np.all(mean_activation(model, second) >= mean_activation(model, first) - 1e-3)
    resumed = visualizer(model)  # a resumed run starts from the stored images
    resumed.warm_start({"detect": first})
    assert np.array_equal(resumed.visualize(1)["detect"], second)


def test_the_same_seed_gives_the_same_images_and_another_seed_others():
    model = PlantedDetectors().eval()
    one = visualizer(model, seed=3).visualize(0)["detect"]
    two = visualizer(model, seed=3).visualize(0)["detect"]
    other = visualizer(model, seed=4).visualize(0)["detect"]
    assert np.array_equal(one, two)
    assert not np.array_equal(one, other)


def test_the_parametrization_inverts_exactly():
    scale = spectrum_scale(SIZE)
    images = from_uint8(np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3), np.uint8))
    back = spectrum_to_image(image_to_spectrum(images, scale), scale)
    assert torch.allclose(back.double(), images, atol=1e-5)


def test_the_model_is_left_exactly_as_it_was():
    torch.manual_seed(0)
    model = PlantedDetectors()
    model.train()
    model.edges.eval()  # a mixed mode must come back mixed
    with torch.no_grad():
        model.norm.running_mean.fill_(0.3)
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch_state, np_state, py_state = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )
    visualizer(model).visualize(0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, params[key]), key  # weights and BatchNorm statistics
    assert all(p.grad is None for p in model.parameters())
    assert model.training and model.norm.training and not model.edges.training
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert random.getstate() == py_state


def test_existing_gradients_are_left_as_they_are():
    model = PlantedDetectors()
    model(torch.rand(2, 3, SIZE, SIZE)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    visualizer(model).visualize(0)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))


LAYERS = [
    LayerSpec("block1.conv", "conv", (4, 8, 8), (4, 3, 3, 3), 120, 3, module="block1.conv"),
    LayerSpec("block1", "conv", (4, 8, 8), (4, 3, 3, 3), 120, 3),
    LayerSpec("layer1.0", "block", (6, 4, 4), None, 230, 8),
    LayerSpec("block3", "conv", (6, 4, 4), (6, 6, 3, 3), 230, 8),
    LayerSpec("logits", "linear", (3,), None, 18),
]


def test_the_default_is_the_first_two_conv_layers_a_block_counted_once():
    assert [layer.name for layer in choose_layers(LAYERS, None)] == ["block1", "layer1.0"]
    chosen = choose_layers(LAYERS, ["block3", "block1"])
    assert [layer.name for layer in chosen] == ["block1", "block3"]
    assert choose_layers(LAYERS, ()) == []


@pytest.mark.parametrize(
    ("name", "says"),
    [("block9", "no such recorded layer"), ("logits", "a linear layer")],
)
def test_a_layer_that_is_missing_or_not_conv_is_one_line_naming_the_option(name, says):
    with pytest.raises(FeatvizLayerError) as error:
        choose_layers(LAYERS, [name], option="--featviz-layers")
    message = str(error.value)
    assert message.startswith(f"--featviz-layers {name!r}") and says in message
    assert "\n" not in message


def test_train_and_the_recorder_share_one_default_step_count():
    assert TrainConfig.__dataclass_fields__["featviz_steps"].default == DEFAULT_STEPS


def test_settings_refuse_zero_steps():
    with pytest.raises(OptionError, match="featviz_steps=0"):
        FeatvizSettings(steps=0)


# -- through the Recorder ---------------------------------------------------------------------
def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return NetlapseCNN(3, SIZE, channels=(4, 8, 8), hidden=8)


def probes() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)


def test_the_recorder_stores_a_visualization_per_channel_and_epoch(tmp_path):
    out = tmp_path / "run.zarr"
    with Recorder(small_cnn(), probes=probes(), out=out, featviz_steps=2) as rec:
        rec.epoch()
    run = open_run(out)
    assert list(run.attrs.featviz.channels) == ["block1.conv", "block2.conv"]
    images = run.featviz("block2.conv")
    assert images.shape == (2, 8, 48, 48, 3) and images.dtype == np.uint8
    assert images.std() > 0  # real pictures, not the fill value


def test_the_recorder_can_turn_it_off_and_names_a_bad_layer(tmp_path):
    with Recorder(small_cnn(), probes=probes(), out=tmp_path / "a.zarr", featviz_layers=[]):
        pass
    assert open_run(tmp_path / "a.zarr").attrs.featviz is None
    with pytest.raises(FeatvizLayerError, match="featviz_layers 'logits'"):
        Recorder(small_cnn(), probes=probes(), out=tmp_path / "b.zarr", featviz_layers=["logits"])
    assert not (tmp_path / "b.zarr").exists()


def test_a_resumed_recorder_continues_the_visualizations_exactly(tmp_path):
    model = small_cnn()
    straight, split = tmp_path / "straight.zarr", tmp_path / "split.zarr"
    with Recorder(model, probes=probes(), out=straight, featviz_steps=2, overhead=None) as rec:
        rec.epoch()
    with Recorder(model, probes=probes(), out=split, featviz_steps=2, overhead=None):
        pass
    with Recorder(
        model, probes=probes(), out=split, featviz_steps=2, resume=True, overhead=None
    ) as rec:
        rec.epoch()
    assert np.array_equal(
        open_run(straight).featviz("block1.conv"), open_run(split).featviz("block1.conv")
    )


def test_train_names_a_bad_featviz_layer_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETLAPSE_CACHE", str(tmp_path / "cache"))
    code = main(
        ["train", "--out", str(tmp_path / "r.zarr"), "--featviz-layers", "hidden", "--epochs", "1"]
        + ["--demo-per-class", "4", "--input-size", "32", "--channels", "4,4"]
    )
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the data log lines
    assert code != 0
    assert last.startswith("netlapse train: error: --featviz-layers 'hidden': a linear layer")
    assert not (tmp_path / "r.zarr").exists()


@pytest.mark.slow
def test_train_resumed_makes_the_same_images_as_an_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("NETLAPSE_CACHE", str(tmp_path / "cache"))
    small = ["--demo-per-class", "4", "--input-size", "32", "--channels", "4,4"]
    small += ["--overhead", "0"]  # exact images: no budget

    def train(out: str, *extra: str) -> None:
        assert main(["-q", "train", "--out", str(tmp_path / out), *small, *extra]) == 0

    train("straight.zarr", "--epochs", "2", "--featviz-steps", "2")
    train("split.zarr", "--epochs", "1", "--featviz-steps", "2")
    train("split.zarr", "--epochs", "2", "--featviz-steps", "2", "--resume")
    straight, split = open_run(tmp_path / "straight.zarr"), open_run(tmp_path / "split.zarr")
    assert split.epochs == 3
    for name in straight.attrs.featviz.channels:
        assert np.array_equal(straight.featviz(name), split.featviz(name))
