"""Every default value of netlapse, in one place at the bottom of the imports.

Config (the command-line options), the Recorder, the encoders and the site read their
defaults from here, so a default is changed once and the help text, the API and the
published site agree. Importable without torch, numpy or zarr (as zarr's own
``zarr.core.config`` sits at the bottom of its imports).
"""

from __future__ import annotations

# -- recording ----------------------------------------------------------------------------
PROBE_COUNT = 8  # probe images recorded per run
ACTIVATION_DTYPE = "float16"  # how activations are stored (the other choice: "float32")
FEATVIZ_STEPS = 8  # warm-started feature-visualization steps per epoch (bench/featviz.py)

# -- animations ---------------------------------------------------------------------------
FPS = 4.0  # epochs per second in every animation
