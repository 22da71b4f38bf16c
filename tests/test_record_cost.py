"""Issue 23: feature visualization that respects the model, and a cost a user can plan on.

Featviz runs at the model's own input shape and channel count, is skipped (with the reason
in the store) where it cannot run, works inside ``inference_mode``/``no_grad``; kernels
are stored as float16 by default; an overhead budget leaves optional work out when the
training between ``epoch()`` calls is too short to pay for it, and says so.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer

from generator import Recorder
from generator.model import NetlapseCNN
from generator.site.layer_pages import recording_note
from generator.store import open_run

SIZE = 32


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return NetlapseCNN(3, SIZE, channels=(4, 8, 8), hidden=8)


def grey_cnn() -> nn.Module:
    """A model of one input channel."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def probes() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)


def small_vit() -> nn.Module:
    torch.manual_seed(0)
    return VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=3,
    )


def grey_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB -> one normalised grey channel: a grayscale model's transform."""
    return (images.float().mean(dim=1, keepdim=True) / 255 - 0.5) / 0.25


def test_featviz_runs_a_fixed_size_model_at_its_own_input_size(tmp_path):
    out = tmp_path / "vit.zarr"
    with Recorder(
        small_vit(),
        probes=probes(),
        out=out,
        featviz_layers=["conv_proj"],
        featviz_steps=1,
    ) as rec:
        rec.epoch()
    run = open_run(out)
    images = run.featviz("conv_proj")
    assert images.shape[:2] == (2, 16) and images.std() > 0
    assert not run.attrs.featviz_skipped


def test_featviz_of_a_grayscale_model_through_transform(tmp_path):
    out = tmp_path / "grey.zarr"
    with Recorder(
        grey_cnn(),
        probes=probes(),
        out=out,
        transform=grey_input,
        featviz_steps=1,
    ) as rec:
        rec.epoch()
    run = open_run(out)
    images = run.featviz(next(iter(run.attrs.featviz.channels)))
    assert images.std() > 0
    assert np.array_equal(images[..., 0], images[..., 2])  # grey: one channel shown


@pytest.mark.parametrize("mode", [torch.inference_mode, torch.no_grad])
def test_epoch_inside_inference_mode_or_no_grad(tmp_path, mode):
    model = small_cnn()
    out = tmp_path / "run.zarr"
    kwargs = {"featviz_steps": 1, "overhead": None}  # no budget: featviz runs every record
    with Recorder(model, probes=probes(), out=out, **kwargs) as rec, mode():
        rec.epoch()
    assert open_run(out).featviz("block1.conv").shape[0] == 2


class Refuses(nn.Module):
    """A conv model whose forward refuses an input that needs gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = small_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            raise RuntimeError("no gradients through this model")
        return self.inner(x)


def test_a_model_featviz_cannot_run_is_skipped_with_the_reason_stored(tmp_path):
    out = tmp_path / "run.zarr"
    with Recorder(Refuses(), probes=probes(), out=out, featviz_steps=1, overhead=None) as rec:
        rec.epoch()
    skipped = open_run(out).attrs.featviz_skipped
    assert skipped and "no gradients" in next(iter(skipped.values()))


def test_kernels_are_stored_as_float16_by_default_and_read_as_float32(tmp_path):
    half, full = tmp_path / "half.zarr", tmp_path / "full.zarr"
    Recorder(small_cnn(), probes=probes(), out=half, featviz_layers=[]).close()
    Recorder(
        small_cnn(), probes=probes(), out=full, featviz_layers=[], kernel_dtype="float32"
    ).close()
    assert open_run(half).attrs.kernel_dtype == "float16"
    assert open_run(full).attrs.kernel_dtype == "float32"
    import zarr

    stored = zarr.open_group(str(half), mode="r")["kernels"]
    assert all(array.dtype == np.float16 for _, array in stored.arrays())
    kernels = open_run(half).kernels("block1.conv")
    assert kernels.dtype == np.float32
    np.testing.assert_allclose(kernels, open_run(full).kernels("block1.conv"), rtol=1e-3)


def test_the_budget_leaves_featviz_out_when_training_takes_no_time_and_says_so(tmp_path):
    out = tmp_path / "run.zarr"
    with Recorder(small_cnn(), probes=probes(), out=out, overhead=0.03) as rec:
        first = open_run(out).featviz("block1.conv")[0]
        rec.epoch()  # no training at all since Recorder(): no time for featviz
    run = open_run(out)
    assert run.attrs.budget["featviz_steps"] == [0, 0]  # no training timed: no credit
    assert np.array_equal(run.featviz("block1.conv")[1], first)  # the last images stand
    assert first.std() > 0  # epoch 0 shows the noise the images start from
    assert "within 3% of training time" in recording_note(run.attrs, "block1.conv")


def test_without_a_limit_featviz_runs_every_step(tmp_path):
    out = tmp_path / "run.zarr"
    with Recorder(small_cnn(), probes=probes(), out=out, overhead=None) as rec:
        rec.epoch()
    assert open_run(out).attrs.budget is None
    assert open_run(out).featviz("block1.conv")[1].std() > 0


class Detached(nn.Module):
    """Its second conv sees a detached input: no gradient reaches the image through it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.second(torch.relu(self.first(x)).detach()))


def test_a_layer_without_a_gradient_is_skipped_and_the_others_kept(tmp_path):
    out = tmp_path / "run.zarr"
    with Recorder(Detached(), probes=probes(), out=out, featviz_steps=1, overhead=None) as rec:
        rec.epoch()
    run = open_run(out)
    assert list(run.attrs.featviz_skipped) == ["second"]
    assert run.featviz("first").std() > 0
    assert recording_note(run.attrs, "second").startswith("No feature visualization")
    assert recording_note(run.attrs, "first") == ""  # the layer page says so, one line
