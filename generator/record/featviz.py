"""Feature visualization per channel, per epoch: the input image each channel responds to.

Lucid-style (Olah et al., 2017): an image is optimised by gradient ascent to maximise one
channel's mean activation. Three choices make the result an image rather than noise:

* a **decorrelated Fourier parametrization**: the optimised tensor is an RFFT spectrum per
  colour, scaled by 1 / frequency (so every frequency gets a comparable step and low ones
  are not drowned by high ones), in a colour space decorrelated by the square root of the
  ImageNet colour covariance, squashed to [0, 1] by a sigmoid;
* **robustness transforms**: every step sees the image padded, then jittered, scaled and
  rotated at random (one ``grid_sample`` per step, independent per image), so only
  patterns that survive small shifts are reinforced;
* **all channels of a layer in one batch**: image ``c`` of the batch is scored by channel
  ``c`` only, so a layer costs one forward/backward per step however many channels it has.
  The forward stops at the layer (a hook raises), so later layers cost nothing.

Each epoch starts from the previous epoch's stored images (the parametrization is
inverted exactly, up to the uint8 rounding), so a few steps follow the channel as it
changes: ``FIRST_STEPS_FACTOR`` x ``steps`` from noise at the first record, ``steps``
afterwards. Because the warm start goes through the stored uint8 images only, a resumed
run produces the same images as one that never stopped.

The images live in the model's own input space: its channel count (the colour
decorrelation only for 3 channels; a grey model's images are grey) and, after the random
transforms, its own height and width (``input_shape``, from the probes), so a fixed-size
model (a ViT) sees exactly the input it takes. The stored sheet stays ``size`` px square,
RGB: one channel is shown grey, two get a grey third, more show their first three. A layer
the model cannot visualise (any exception from its forward, no gradient reaching the
image) is skipped with the reason (``skipped``), never a crash: feature visualization is
an extra, and recording must not stop a user's training.

The model is used as it is at record time and left exactly so: eval mode inside
``hooks.untouched`` (modes and every global generator restored), gradients taken with
``torch.autograd.grad`` with respect to the spectrum only (no parameter's ``.grad`` is
written), and the random transforms drawn from a private, seeded ``torch.Generator``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from generator.defaults import FEATVIZ_STEPS
from generator.errors import FeatvizLayerError, OptionError, one_line
from generator.record.featviz_image import (
    INIT_SD,
    from_uint8,
    image_to_spectrum,
    random_views,
    spectrum_scale,
    spectrum_to_image,
    to_uint8,
)
from generator.record.hooks import untouched
from generator.record.layers import recorded_modules
from generator.store import FEATVIZ_KINDS, FeatvizSpec, LayerSpec

DEFAULT_STEPS = FEATVIZ_STEPS  # the old name, which tests and bench/featviz.py import
FIRST_STEPS_FACTOR = 4  # steps from noise at the first record: 4 x 8 = 32
DEFAULT_SIZE = 48  # side of each image in px (64 px cost 1.8x as much; bench/README.md)
DEFAULT_CHANNELS = 64  # channels visualised per layer: the first N (cost grows with N)
DEFAULT_LAYER_COUNT = 2  # default layers: the first two conv layers recorded
LEARNING_RATE = 0.1  # Adam on the spectrum; 2x Lucid's 0.05: few steps per epoch

__all__ = [  # the image's functions live in featviz_image; tests and bench import them here
    "from_uint8",
    "image_to_spectrum",
    "random_views",
    "spectrum_scale",
    "spectrum_to_image",
    "to_uint8",
]

ToInput = Callable[[torch.Tensor], torch.Tensor]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatvizSettings:
    """What to visualise and how hard: ``layers`` None = the first ``DEFAULT_LAYER_COUNT``
    conv layers, () = off; ``steps`` per warm-started epoch; ``size`` px; ``channels`` the
    cap per layer (the first N); ``seed`` of the random transforms and the first noise."""

    layers: tuple[str, ...] | None = None
    steps: int = FEATVIZ_STEPS
    size: int = DEFAULT_SIZE
    channels: int = DEFAULT_CHANNELS
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, low in (("steps", self.steps, 1), ("size", self.size, 16)):
            if not isinstance(value, int) or value < low:
                raise OptionError(f"featviz_{name}={value!r}: pass an integer >= {low}")
        if not isinstance(self.channels, int) or self.channels < 1:
            raise OptionError(f"featviz_channels={self.channels!r}: pass an integer >= 1")

    @property
    def first_steps(self) -> int:
        return self.steps * FIRST_STEPS_FACTOR


def choose_layers(
    layers: Sequence[LayerSpec], wanted: Sequence[str] | None, *, option: str = "featviz_layers"
) -> list[LayerSpec]:
    """The recorded layers to visualise, in model order (default: the first two conv
    layers or blocks, a block counted once with its convs); one line naming ``option``
    for a name that is not a recorded layer or whose output is not a (C, H, W) map."""
    # a token or channels-last output is a map only after the capture rearranges it; the
    # optimisation reads the module's own output, so it takes channels-first maps only
    maps = [
        layer
        for layer in layers
        if layer.kind in FEATVIZ_KINDS and layer.layout == "channels_first"
    ]
    if wanted is None:
        return _outermost(maps)[:DEFAULT_LAYER_COUNT]
    by_name = {layer.name: layer for layer in layers}
    for name in wanted:
        if name not in by_name:
            shown = ", ".join(layer.name for layer in maps[:4]) or "none"
            raise FeatvizLayerError(
                f"{option} {name!r}: no such recorded layer; conv layers are named like {shown}"
            )
        if by_name[name].kind not in FEATVIZ_KINDS:
            raise FeatvizLayerError(
                f"{option} {name!r}: a {by_name[name].kind} layer; feature visualization "
                "needs a conv layer's (C, H, W) output"
            )
        if by_name[name].layout != "channels_first":
            raise FeatvizLayerError(
                f"{option} {name!r}: its output is {by_name[name].layout.replace('_', '-')}; "
                "feature visualization needs a layer whose own output is (C, H, W)"
            )
    return [layer for layer in maps if layer.name in set(wanted)]


def _outermost(layers: Sequence[LayerSpec]) -> list[LayerSpec]:
    """Layers not inside another of ``layers``: a block's output stands for the convs it
    holds (``block1`` rather than ``block1.conv``, ``layer1.0`` for ``layer1.0.conv1``)."""
    paths = [layer.module or layer.name for layer in layers]
    return [
        layer
        for layer, path in zip(layers, paths, strict=True)
        if not any(path.startswith(other + ".") for other in paths)
    ]


def featviz_spec(
    layers: Sequence[LayerSpec], settings: FeatvizSettings, *, option: str = "featviz_layers"
) -> FeatvizSpec | None:
    """What the store holds for these settings (None when nothing is visualised)."""
    chosen = choose_layers(layers, settings.layers, option=option)
    if not chosen:
        return None
    return FeatvizSpec(
        size=settings.size,
        channels={layer.name: min(layer.channels, settings.channels) for layer in chosen},
        steps=settings.steps,
        first_steps=settings.first_steps,
        seed=settings.seed,
    )


def affine_input(
    transform: Callable[[torch.Tensor], torch.Tensor], *, image_channels: int = 3
) -> ToInput:
    """A differentiable [0, 1] image -> model input map equal to ``transform`` of uint8
    images of ``image_channels``, found by applying it to black and white: exact for
    per-channel affine normalisations (the project's and ImageNet's), and for a grey
    transform of grey images. The image has as many channels as the model input."""
    black = transform(torch.zeros(1, image_channels, 2, 2, dtype=torch.uint8)).float()
    white = transform(torch.full((1, image_channels, 2, 2), 255, dtype=torch.uint8)).float()
    channels = black.shape[1]
    offset = black.mean(dim=(0, 2, 3)).view(1, channels, 1, 1)
    gain = (white - black).mean(dim=(0, 2, 3)).view(1, channels, 1, 1)
    return lambda image: image * gain.to(image.device) + offset.to(image.device)


# -- the optimisation -----------------------------------------------------------------------
class _Reached(Exception):
    """Raised by the hook once the target layer ran: the rest of the forward is not needed."""


@contextmanager
def _layer_output(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Yield a list that receives ``module``'s output (with its graph); the forward stops
    there. The hook is removed on exit."""
    got: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        value = output[0] if isinstance(output, (tuple, list)) else output
        if isinstance(value, torch.Tensor):  # a conv layer's map; anything else is not kept
            got.append(value)
        raise _Reached

    handle = module.register_forward_hook(hook)
    try:
        yield got
    finally:
        handle.remove()


def channel_means(
    model: nn.Module, module: nn.Module, inputs: torch.Tensor, channels: int
) -> torch.Tensor:
    """(B,) the mean of channel ``b`` of ``module``'s output for input ``b``."""
    with _layer_output(module) as got, suppress(_Reached):
        model(inputs)
    if not got or not isinstance(got[0], torch.Tensor) or got[0].ndim != 4:
        raise FeatvizLayerError(
            "featviz_layers: a layer gave no (N, C, H, W) output for the image; pass "
            "featviz_layers without it"
        )
    index = torch.arange(channels, device=got[0].device)
    return got[0][index, index].float().mean(dim=(1, 2))


def optimise(
    model: nn.Module,
    module: nn.Module,
    spectrum: torch.Tensor,
    *,
    steps: int,
    to_input: ToInput,
    generator: torch.Generator,
    out: tuple[int, int] | None = None,
) -> torch.Tensor:
    """``steps`` Adam steps of gradient ascent on each image's own channel mean, the model
    seeing views of ``out`` (height, width) px; returns the images (B, C, S, S) in (0, 1).
    Only ``spectrum`` receives gradients."""
    scale = spectrum_scale(spectrum.shape[2]).to(spectrum.device)
    reference = next((p for p in model.parameters() if p.is_floating_point()), spectrum)
    spectrum = spectrum.detach().clone().requires_grad_(True)
    adam = torch.optim.Adam([spectrum], lr=LEARNING_RATE)
    channels = spectrum.shape[0]
    for _ in range(steps):
        view = random_views(spectrum_to_image(spectrum, scale), generator, out)
        inputs = to_input(view).to(dtype=reference.dtype)
        score = channel_means(model, module, inputs, channels).sum()
        (grad,) = torch.autograd.grad(-score, [spectrum])
        spectrum.grad = grad
        adam.step()
    return spectrum_to_image(spectrum.detach(), scale)


class FeatureVisualizer:
    """Visualises the chosen channels of ``model`` at each record, warm-starting each
    layer from the images of the record before (``warm_start`` sets them on resume).

    ``input_shape`` is the model's input (C, H, W) (None: 3 channels, the views as they
    are). A layer that cannot be visualised is skipped from then on, its reason kept in
    ``skipped`` (layer -> one line); ``steps`` of ``visualize`` lets a budget ask for fewer.
    """

    def __init__(
        self,
        model: nn.Module,
        spec: FeatvizSpec,
        modules: Mapping[str, nn.Module],
        *,
        to_input: ToInput,
        input_shape: tuple[int, int, int] | None = None,
    ) -> None:
        self.model, self.spec, self.to_input = model, spec, to_input
        self.modules = dict(modules)  # by layer name; ``spec.channels`` says which are used
        self.input_shape = input_shape
        self.skipped: dict[str, str] = {}
        self._previous: dict[str, np.ndarray] = {}

    @property
    def channels(self) -> int:
        """The image's channel count: the model input's."""
        return 3 if self.input_shape is None else self.input_shape[0]

    def warm_start(self, images: Mapping[str, np.ndarray]) -> None:
        """Start the next record from these (C, S, S, 3) uint8 images per layer."""
        self._previous = {name: np.asarray(images[name]) for name in self.spec.channels}

    def visualize(self, epoch: int, *, steps: int | None = None) -> dict[str, np.ndarray]:
        """layer -> (C, S, S, 3) uint8 images of the model as it is now, one per channel,
        after ``steps`` steps (default: the spec's ``steps`` from the last images, or its
        ``first_steps`` from noise; 0 = the last images again). Runs with gradients even
        inside the caller's ``inference_mode``."""
        out: dict[str, np.ndarray] = {}
        with torch.inference_mode(False), untouched(self.model), torch.enable_grad():
            for index, name in enumerate(self.spec.channels):
                if name in self.skipped:
                    continue
                images = self._layer(name, epoch, index, steps)
                if images is not None:
                    out[name] = images
        self._previous.update(out)
        return out

    def _layer(self, name: str, epoch: int, index: int, steps: int | None) -> np.ndarray | None:
        """One layer's images, or None with the reason in ``skipped``."""
        warm = name in self._previous
        if steps == 0 and warm:  # the budget left it out: the last images stand
            return self._previous[name]
        if steps is None:
            steps = self.spec.steps if warm else self.spec.first_steps
        generator = torch.Generator().manual_seed(_stream(self.spec.seed, epoch, index))
        start = self._start(name, self.spec.channels[name], generator)
        try:
            images = optimise(
                self.model,
                self.modules[name],
                start.to(_device_of(self.model)),
                steps=steps,
                to_input=self.to_input,
                generator=generator,
                out=None if self.input_shape is None else self.input_shape[1:],
            )
        except Exception as error:  # noqa: BLE001 - any model may refuse; training goes on
            self.skipped[name] = one_line(error)
            log.warning("feature visualization of %s skipped: %s", name, self.skipped[name])
            return None
        return to_uint8(images.cpu())

    def _start(self, name: str, channels: int, generator: torch.Generator) -> torch.Tensor:
        """The spectrum to start from: the previous record's images, else faint noise."""
        size, scale = self.spec.size, spectrum_scale(self.spec.size)
        if name in self._previous:
            return image_to_spectrum(from_uint8(self._previous[name], self.channels), scale)
        shape = (channels, self.channels, size, size // 2 + 1, 2)
        return torch.randn(shape, generator=generator) * INIT_SD


def _stream(seed: int, epoch: int, layer: int) -> int:
    """One generator seed per (seed, epoch, layer): draws never depend on other layers."""
    return (seed * 1_000_003 + epoch * 1009 + layer) % 2**63


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def visualizer_for(
    model: nn.Module,
    layers: Sequence[LayerSpec],
    settings: FeatvizSettings,
    *,
    transform: Callable[[torch.Tensor], torch.Tensor],
    input_shape: tuple[int, int, int] | None = None,
    image_channels: int = 3,
    option: str = "featviz_layers",
) -> FeatureVisualizer | None:
    """The visualizer of ``model``'s chosen recorded layers (None when none is chosen);
    ``transform`` maps uint8 images of ``image_channels`` to model input of
    ``input_shape`` (C, H, W), as for the probes."""
    spec = featviz_spec(layers, settings, option=option)
    if spec is None:
        return None
    modules = recorded_modules(model, layers)
    to_input = affine_input(transform, image_channels=image_channels)
    return FeatureVisualizer(model, spec, modules, to_input=to_input, input_shape=input_shape)


def follow_store(
    visualizer: FeatureVisualizer | None, stored: FeatvizSpec | None
) -> FeatureVisualizer | None:
    """The visualizer a resumed run uses when its layers were not chosen: the store's own
    (a store made without feature visualizations continues without them)."""
    if visualizer is None or stored is None:
        return None
    return FeatureVisualizer(
        visualizer.model,
        stored,
        visualizer.modules,
        to_input=visualizer.to_input,
        input_shape=visualizer.input_shape,
    )
