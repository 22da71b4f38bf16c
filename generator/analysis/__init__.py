"""Numbers derived from run stores: read through ``generator.store``, computed in memory,
no drawing and no HTML (the site shows them).

- ``cka``: linear CKA of every layer's probe activations against the last epoch and
  between layers, and the epoch each layer settles;
- ``statistics``: per-run statistics the gallery charts (dead channels, kernel change,
  top confusions, which classes a probe chart shows, when a chart wants a log scale).
"""

from generator.analysis.cka import RunSimilarity, run_similarity
from generator.analysis.statistics import (
    dead_share,
    kernel_change,
    top_classes,
    top_confused,
    wants_log_scale,
)

__all__ = [
    "RunSimilarity",
    "dead_share",
    "kernel_change",
    "run_similarity",
    "top_classes",
    "top_confused",
    "wants_log_scale",
]
