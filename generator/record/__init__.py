"""Record any PyTorch model: hooks, layer discovery, probes and the ``Recorder`` API.

``Recorder`` is what a user's loop calls; ``hooks`` captures outputs without changing
training; ``layers`` chooses and describes the layers of any ``nn.Module``; ``probes``
turns tensors, image paths or a dataset into the fixed probe images.
"""

from generator.record.hooks import capture_outputs, channel_statistics, untouched
from generator.record.layers import LayerChoiceError, chosen_layers, default_layers, trace
from generator.record.probes import ProbeError, ProbeSet, prepare_probes
from generator.record.recorder import ModelOutputError, Recorder, RecorderClosedError

__all__ = [
    "LayerChoiceError",
    "ModelOutputError",
    "ProbeError",
    "ProbeSet",
    "Recorder",
    "RecorderClosedError",
    "capture_outputs",
    "channel_statistics",
    "chosen_layers",
    "default_layers",
    "prepare_probes",
    "trace",
    "untouched",
]
