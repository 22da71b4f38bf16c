"""Record any PyTorch model: hooks, layer discovery, probes, and the ``Recorder`` API.

``hooks`` captures outputs without changing training; ``layers`` chooses and describes the
layers of any ``nn.Module``; ``probes`` turns tensors, image paths or a dataset into the
fixed probe images. None of them writes anything. ``record.recorder`` (what a user's loop
calls, as ``from generator import Recorder``) writes the store, so it sits a stage higher
(``tests/test_imports.py``) and this package does not import it.
"""

from generator.record.hooks import capture_outputs, channel_statistics, untouched
from generator.record.layers import LayerChoiceError, chosen_layers, default_layers, trace
from generator.record.probes import ProbeError, ProbeSet, prepare_probes

__all__ = [
    "LayerChoiceError",
    "ProbeError",
    "ProbeSet",
    "capture_outputs",
    "channel_statistics",
    "chosen_layers",
    "default_layers",
    "prepare_probes",
    "trace",
    "untouched",
]
