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
KERNEL_DTYPE = "float16"  # how conv kernels are stored ("float32" on request): half the store
OVERHEAD = 0.03  # recording's share of the training time between epochs (None: no limit)
# train records everything (0 = no limit): its stores are then a function of the seed, so a
# killed run resumed is bit-identical to an uninterrupted one (docs/reliability.md); a
# budget's choices follow measured times, which differ from run to run
TRAIN_OVERHEAD = 0.0
# gradient norms, update/weight ratios and histograms per layer, gathered by hooks during
# training (bench/record.py measures their cost); off: Recorder(gradients=False),
# train --no-gradients
GRADIENTS = True
# the gradient monitor measures a sample of the backward passes (record/sampling.py):
# without a budget every GRADIENT_EVERY-th (a function of the pass count: train's stores stay
# a function of the seed); within Recorder(overhead=) a GRADIENT_SHARE of that budget
GRADIENT_EVERY = 32
GRADIENT_SHARE = 1 / 3
HISTOGRAM_BINS = 64  # bins between the fixed edges of every histogram (plus under/overflow)

# -- training (train) ---------------------------------------------------------------------
EPOCHS = 10  # epochs to train in total; also the demo run `build` trains when it finds none
BATCH_SIZE = 16
LEARNING_RATE = 1e-3  # Adam
VAL_FRACTION = 0.2  # share of each class held out for validation
SEED = 0
DEVICE = "auto"
KEEP_CHECKPOINTS = 2  # newest checkpoints kept beside the store; 0 keeps all
DEMO_PER_CLASS = 120  # demo images generated per class
DEMO_INPUT_SIZE = 128  # input side for the demo data
DATA_INPUT_SIZE = 512  # input side for --data

# -- animations and the site (build) ------------------------------------------------------
FPS = 4.0  # epochs per second in every animation
SITE = "site"  # the site folder `build` writes and `serve` serves
FORMATS = ("auto",)
COLORMAP = "seed"
SCALE = "channel"  # one colour scale per channel over all epochs
CHANNEL_PROBES = 1  # probes with per-channel animations
CONTACT_PROBES = 1  # probes with a contact sheet
CHANNEL_PAGES = 32  # conv channels per layer with their own page
MAX_SIDE = 1024  # largest frame side in px
CHANNEL_SIDE = 256  # side of per-channel animations in px
GIF_MAX_SIDE = 256  # the GIFs to share with --formats auto
NOTEBOOK_SIDE = 512  # side of a layer grid shown inline in a notebook (generator.animation)
# The site's size a default build aims under: half of GitHub Pages' 1 GB (its files must
# also stay under 100 MB each), leaving room for a second run or a later rebuild.
BUDGET_MB = 500.0
# A net of at most this many recorded layers gets every layer's animations by default; a
# deeper one its block outputs, first and last conv and output (build --all-layers: all).
ALL_LAYERS_UP_TO = 30
# s a rebuilt site keeps the files it no longer lists after its new pages are in place: a
# reader who loaded an old page just before it was replaced still finds what it links to
# (the neighbours of a channel page that is going, its media) while fetching them
STALE_GRACE_S = 2.0

# -- a dask cluster (build --scheduler) -----------------------------------------------------
WORKER_POLL = 5.0  # s between looks at the cluster while a build's jobs wait
WORKERLESS_TIMEOUT = 60.0  # s a build waits with no worker on the cluster, then fails

# -- comparing runs (build: the compare page) -----------------------------------------------
AGREE_THRESHOLD = 0.9  # two runs agree on a layer from the epoch its cross-run CKA stays >= this
COMPARE_LAYERS = 32  # layers per run in the cross-run CKA; more are thinned evenly over depth
COMPARE_SAMPLES = 512  # probe x region samples per layer in the cross-run CKA
COMPARE_RUNS = 8  # runs whose pairs get a cross-run CKA (the first ones of the build)

# -- ingest -------------------------------------------------------------------------------
INGEST_SIZE = 512  # square crop side of ingested frames
INGEST_EVERY = 1  # keep every N-th frame
DARK_THRESHOLD = 16.0  # mean brightness (0-255) below which a frame is dropped

# -- serve --------------------------------------------------------------------------------
PORT = 8000
SERVE_REQUEST_TIMEOUT = 5.0  # s a client may take to send a request line and headers
SERVE_SEND_TIMEOUT = 60.0  # s a client may stall reading an answer (a paused video)
SERVE_CONNECTIONS = 64  # connections served at once; more wait, then are closed
