"""Record any PyTorch model: the ``Recorder`` API and the parts it is made of.

Where each thing lives (every module here may be imported by name; this face lists what
the other stages use):

- ``recorder``: ``Recorder``, what a user's loop calls (``from generator import
  Recorder``), the Lightning callback wraps and ``train`` records through. A thin API
  over the modules below.
- ``opening``: ``RecorderSetup`` (what a Recorder records, checked) and the store it
  opens for it: a new one, or an existing one reopened and checked to continue.
- ``compatible``: ``Recording``, the one check that a resumed store is this run's (the
  Recorder's ``resume=True`` and ``train --resume`` both ask it).
- ``capture``: the model on the probes as an ``EpochRecord`` of numpy copies
  (activations, channel statistics, kernels, weight change, metrics); writes nothing.
  ``recorded_kernels`` is the one kernel capture (``train --resume`` checks a
  checkpoint's weights with it).
- ``writer``: ``BackgroundWriter``, the write thread: epochs are committed while the next
  one trains, and a failed write is one line at the next call.
- ``hooks``: output capture that leaves training untouched (``untouched``).
- ``layers``: which layers of any ``nn.Module`` to record and how each looks in the store.
- ``probes``: tensors, image paths or a dataset as the fixed probe images
  (``prepare_probes``), and the one round-robin picker over classes (``pick_indices``).
- ``featviz`` and ``examples``: the per-channel work of each record (feature
  visualizations, a pool's top images per channel).
"""

from generator.record.capture import ModelCapture, recorded_kernels, user_metric_name
from generator.record.compatible import Recording, Setting
from generator.record.examples import ExamplePool, split_pool, top_examples
from generator.record.featviz import FeatvizSettings, featviz_spec, visualizer_for
from generator.record.hooks import capture_outputs, channel_statistics, untouched
from generator.record.layers import (
    LayerChoiceError,
    chosen_layers,
    default_layers,
    describe_layers,
    trace,
)
from generator.record.opening import RecorderSetup, recorded_settings
from generator.record.outputs import OutputChoice, pick_logits, unwrapped
from generator.record.probes import (
    ProbeError,
    ProbeSet,
    pick_indices,
    prepare_probes,
    with_sources,
)
from generator.record.recorder import Recorder, RecorderClosedError, training_recorder
from generator.record.writer import BackgroundWriter

__all__ = [
    "BackgroundWriter",
    "ExamplePool",
    "FeatvizSettings",
    "LayerChoiceError",
    "ModelCapture",
    "OutputChoice",
    "ProbeError",
    "ProbeSet",
    "Recorder",
    "RecorderClosedError",
    "RecorderSetup",
    "Recording",
    "Setting",
    "capture_outputs",
    "channel_statistics",
    "chosen_layers",
    "default_layers",
    "describe_layers",
    "featviz_spec",
    "pick_indices",
    "pick_logits",
    "prepare_probes",
    "recorded_kernels",
    "recorded_settings",
    "split_pool",
    "top_examples",
    "training_recorder",
    "trace",
    "untouched",
    "unwrapped",
    "user_metric_name",
    "visualizer_for",
    "with_sources",
]
