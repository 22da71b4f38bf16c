"""Issue 23, transformers and channels-last: a ViT's encoder layers are recorded as
(D, gh, gw) maps on the patch grid (the class token left out), a swin's channels-last
stages as (C, H, W) maps, and both build like any CNN; recording leaves training as it was."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer, swin_t

from generator import Recorder, open_run
from generator.__main__ import main
from generator.record.hooks import as_map
from generator.record.layers import default_layers, describe_layers, trace
from generator.store import LayerSpec

QUICK: dict[str, Any] = {"featviz_layers": []}
ENCODER_LAYERS = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
SWIN_STAGES = ["features.1", "features.3", "features.5", "features.7"]


def vit() -> VisionTransformer:
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


def probes(count: int = 3, height: int = 32, width: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (count, 3, height, width), dtype=torch.uint8, generator=generator)


def _record(model: nn.Module, out: Path, **options: Any) -> None:
    with Recorder(model, probes=probes(), out=out, **QUICK, **options) as rec:
        rec.epoch(train_loss=1.0)


def test_vit_records_its_encoder_layers_as_maps_on_the_patch_grid(tmp_path: Path) -> None:
    model = vit()
    _record(model, tmp_path / "vit.zarr")
    run = open_run(tmp_path / "vit.zarr")
    layers = {layer.name: layer for layer in run.attrs.layers}
    assert set(ENCODER_LAYERS) <= set(layers)
    for name in ENCODER_LAYERS:
        spec = layers[name]
        assert spec.shape == (16, 4, 4) and spec.kind == "block"
        assert spec.layout == "tokens" and spec.extra_tokens == 1
        assert run.layer_at(name, 1).shape == (3, 16, 4, 4)
    assert layers["conv_proj"].layout == "channels_first" and layers["conv_proj"].extra_tokens == 0


def test_token_maps_are_the_patch_tokens_in_grid_order() -> None:
    model = vit().eval()
    images = torch.randn(2, 3, 32, 32)
    _, specs = describe_layers(model, images[:1])
    spec = next(s for s in specs if s.name == ENCODER_LAYERS[1])
    with torch.no_grad():
        tokens = model.encoder.layers.encoder_layer_1(
            model.encoder.layers.encoder_layer_0(
                model.encoder.dropout(
                    torch.cat(
                        [
                            model.class_token.expand(2, -1, -1),
                            model.conv_proj(images).flatten(2).transpose(1, 2),
                        ],
                        dim=1,
                    )
                    + model.encoder.pos_embedding
                )
            )
        )
    grid = as_map(tokens, spec)
    assert grid.shape == (2, 16, 4, 4)
    # token 1 + 4 r + c is the patch at row r, column c; token 0 (the class token) is left out
    assert torch.equal(grid[:, :, 2, 3], tokens[:, 1 + 4 * 2 + 3])


def test_tokens_without_a_patch_conv_follow_the_input_aspect() -> None:
    class Patches(nn.Module):
        """Cuts 8x8 patches by reshaping (no conv) and adds 2 register tokens at the front."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(3 * 64, 8)
            self.block = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8))
            self.registers = nn.Parameter(torch.zeros(1, 2, 8))
            self.stem = nn.Conv2d(3, 3, 1)  # netlapse records models with a conv
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.nn.functional.unfold(self.stem(x), 8, stride=8).transpose(1, 2)
            x = self.embed(x)
            x = torch.cat([self.registers.expand(len(x), -1, -1), x], dim=1)
            return self.head(self.block(x)[:, 0])

    model = Patches()
    # the stem's output grid (24, 40) is not the token grid: the aspect ratio gives (3, 5)
    found = trace(model, torch.zeros(1, 3, 24, 40))
    assert found.views["embed"].shape == (8, 3, 5) and found.views["embed"].extra_tokens == 0
    assert found.views["block"].shape == (8, 3, 5) and found.views["block"].extra_tokens == 2


def _swin() -> nn.Module:
    torch.manual_seed(0)
    return swin_t(weights=None, num_classes=3)


def test_swin_stages_are_stored_channels_first(tmp_path: Path) -> None:
    model = _swin()
    found = trace(model, torch.zeros(1, 3, 32, 32))
    chosen = default_layers(model, found)
    assert {"features.1.1", "features.3.1", "features.5.5", "features.7.1"} <= set(chosen)
    _record(model, tmp_path / "swin.zarr", layers=["features.0.0", *SWIN_STAGES, "head"])
    run = open_run(tmp_path / "swin.zarr")
    layers = {layer.name: layer for layer in run.attrs.layers}
    shapes = {name: layers[name].shape for name in SWIN_STAGES}
    assert shapes == {
        "features.1": (96, 8, 8),
        "features.3": (192, 4, 4),
        "features.5": (384, 2, 2),
        "features.7": (768, 1, 1),
    }
    assert all(layers[name].layout == "channels_last" for name in SWIN_STAGES)
    assert (
        layers["features.0.0"].kind == "conv" and layers["features.0.0"].layout == "channels_first"
    )
    with torch.no_grad():
        stage = model.eval().features[:2](probes().float() / 255)  # not the model input, a shape
    assert as_map(stage, layers["features.1"]).shape == (3, 96, 8, 8)
    assert run.layer_at("features.3", 1).shape == (3, 192, 4, 4)


def test_a_channels_last_map_around_one_conv_is_a_block() -> None:
    model = _swin()
    _, specs = describe_layers(model, torch.zeros(1, 3, 32, 32), ["features.0"])
    assert specs[0].kind == "block" and specs[0].kernel_shape is None
    assert specs[0].layout == "channels_last" and specs[0].shape == (96, 8, 8)


def test_a_permuted_layernorm_is_channels_last() -> None:
    class Permuted(nn.Module):
        """convnext's block: conv, then a LayerNorm over channels-last, then back."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 4, stride=4)
            self.norm = nn.LayerNorm(8)
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            return self.head(x.mean(dim=(2, 3)))

    found = trace(Permuted(), torch.zeros(1, 3, 48, 64))
    assert found.views["norm"].layout == "channels_last"
    assert found.views["norm"].shape == (8, 12, 16)
    assert "conv" not in found.views


def test_a_cnn_has_no_views() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 3),
    )
    assert trace(model, torch.zeros(1, 3, 32, 32)).views == {}


def test_old_layer_entries_read_channels_first() -> None:
    spec = LayerSpec("c", "conv", (4, 8, 8), (4, 3, 3, 3), module="c")
    entry = spec.to_json()
    assert "layout" not in entry and "extra_tokens" not in entry
    tokens = LayerSpec("t", "block", (16, 4, 4), layout="tokens", extra_tokens=1)
    assert LayerSpec.from_json(tokens.to_json()) == tokens


def test_recording_a_vit_leaves_training_bit_identical(tmp_path: Path) -> None:
    plain = vit()
    recorded = copy.deepcopy(plain)
    ends = []
    for model, record in ((plain, False), (recorded, True)):
        torch.manual_seed(5)
        random.seed(5)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        if record:
            with Recorder(model, probes=probes(), out=tmp_path / "r.zarr", **QUICK) as rec:
                _step(model, optimizer)
                rec.epoch()
        else:
            _step(model, optimizer)
        _step(model, optimizer)
        ends.append((model.state_dict(), torch.get_rng_state(), random.random()))
    (state_a, rng_a, py_a), (state_b, rng_b, py_b) = ends
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    assert torch.equal(rng_a, rng_b) and py_a == py_b


def _step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    model.train()
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()


@pytest.mark.slow
def test_a_vit_store_builds_an_animation_per_layer(tmp_path: Path) -> None:
    store, site = tmp_path / "vit.zarr", tmp_path / "site"
    _record(vit(), store)
    args = ["build", "--store", str(store), "--out", str(site), "--formats", "mp4"]
    main([*args, "--probe-index", "1", "--channel-probes", "0", "--channel-pages", "0"])
    names = [layer.key for layer in open_run(store).attrs.layers]
    videos = [path.name for path in site.rglob("*.mp4")]
    for key in names:
        assert any(key in video for video in videos), (key, videos)
    assert np.isfinite(open_run(store).layer_at(ENCODER_LAYERS[0], 1)).all()


def test_feature_visualization_takes_only_maps_the_module_itself_outputs() -> None:
    """A ViT's default featviz layers were ``conv_proj`` and ``encoder`` (tokens): the
    whole encoder ran on 64 images at 224 px, then was skipped. Now only channels-first
    outputs are chosen, and asking for a token layer is one line."""
    from generator.errors import FeatvizLayerError
    from generator.record.featviz import choose_layers

    _, specs = describe_layers(vit(), probes(1).float() / 255)
    assert [layer.name for layer in choose_layers(specs, None)] == ["conv_proj"]
    with pytest.raises(FeatvizLayerError, match="encoder_layer_0.*tokens"):
        choose_layers(specs, [ENCODER_LAYERS[0]])
