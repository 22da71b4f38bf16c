"""The store's names: its groups, metrics and statistics, and how a layer name becomes a key.

Every path inside a store is built here, so the writer, the reader and the array plan
(``_schema``) agree on it by construction. Pure functions of strings: no zarr.
"""

from __future__ import annotations

import hashlib
import re
import string
from urllib.parse import unquote

PROBES, ACTIVATIONS, KERNELS, METRICS = "probes", "activations", "kernels", "metrics"
PROBE_DISPLAY = "display"  # probes/display: RGB pictures of probes that are neither grey nor RGB
GROUPS = (PROBES, ACTIVATIONS, KERNELS, METRICS)
SCALAR_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
CONFUSION, PROBE_PROBS = "confusion", "probe_probs"
WEIGHT_CHANGE, CHANNEL_STATS = "weight_change", "channel_stats"
# Root attribute: any other scalar a user's loop passed, name -> one value per committed
# epoch (null where not passed); written in the same metadata write as epochs_committed.
EXTRA_METRICS = "extra_metrics"
# min/max give each frame's negative and positive colour scale; abs_max fixes a scale over
# epochs; mean and abs_mean feed the statistics pages. All per (epoch, probe, channel).
STAT_FIELDS = ("min", "max", "mean", "abs_mean", "abs_max")
# Optional (schema v2): feature visualizations of some conv layers, described by the root
# attribute ``featviz`` (``FeatvizSpec``); stores without it have no ``featviz/`` arrays.
FEATVIZ = "featviz"
# Dataset examples (optional, schema v2): a fixed pool of images written once under
# ``example_pool/`` and, per conv layer and epoch, each channel's top-k pool images by the
# channel's maximum activation under ``examples/<layer>/``. The root attribute ``examples``
# ({"pool": N, "top_k": k, "sources": [...]}) says a store has them; stores without it
# (older ones, or ``--example-pool 0``) read and build as before.
EXAMPLES, EXAMPLE_POOL = "examples", "example_pool"
# Root attributes of what recording left out (optional; absent = nothing left out):
# ``featviz_skipped`` layer -> why it has no feature visualization; ``budget`` the overhead
# budget and, per committed epoch, the featviz steps done and whether dataset examples were
# found (``{"overhead": f, "featviz_steps": [...], "examples": [...]}``).
FEATVIZ_SKIPPED, BUDGET = "featviz_skipped", "budget"
# How conv kernels are stored (root attribute ``kernel_dtype``; absent = "float32"); the
# reader returns float32 either way.
KERNEL_DTYPE = "kernel_dtype"
EXAMPLE_FIELDS = {"index": "int32", "position": "int32", "value": "float32"}

# A layer's name becomes one folder name in the store (``array_key``): a file system allows
# 255 bytes, and zarr adds nothing to it.
MAX_KEY_LENGTH = 200
# Characters kept as they are in an array key: zarr v3's portable node-name characters.
KEY_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_.-")


def array_key(name: str) -> str:
    """A layer name as one zarr node name: the name itself when it is portable, else escaped.

    Module paths (``layer1.0.conv1``, ``features.3``) are kept as they are; any other
    character becomes ``%XX`` per UTF-8 byte (``%`` itself too, so the encoding is one to
    one), and so do a leading ``.`` (hidden files, ``..``) and the first ``_`` of a leading
    ``__`` (a prefix zarr v3 reserves). The name ``zarr.json`` would clash with a group's
    metadata file, so its dot is escaped. ``layer_name(array_key(n)) == n`` for every name.
    """
    parts = []
    for index, char in enumerate(name):
        leading = index == 0 and (char == "." or name.startswith("__"))
        if char in KEY_CHARACTERS and not leading:
            parts.append(char)
        else:
            parts.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    key = "".join(parts)
    return "zarr%2Ejson" if key == "zarr.json" else key


def layer_name(key: str) -> str:
    """The layer name an array key stands for (the inverse of ``array_key``)."""
    return unquote(key, errors="surrogatepass")


def file_stem(name: str) -> str:
    """A layer name as a file-name stem for the site (media folders, pages): the name
    itself when it is already a plain file name (``block1``, ``layer1.0.conv1``), else its
    safe characters plus a short hash of the whole name, so ``a/b`` and ``a-b`` never share
    a file and no name makes a sub-folder."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-")
    if stem == name:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return f"{stem or 'layer'}-{digest}"


def activation_path(name: str) -> str:
    return f"{ACTIVATIONS}/{array_key(name)}"


def kernel_path(name: str) -> str:
    return f"{KERNELS}/{array_key(name)}"


def weight_change_path(name: str) -> str:
    """Schema v1-v4: one scalar array per layer (v5: ``metrics/weight_change`` stacked)."""
    return f"{METRICS}/{WEIGHT_CHANGE}/{array_key(name)}"


def channel_stat_path(name: str, stat: str) -> str:
    """Schema v1-v4: one array per layer and statistic."""
    return f"{METRICS}/{CHANNEL_STATS}/{array_key(name)}/{stat}"


def channel_stats_path(name: str) -> str:
    """Schema v5: one array per layer, the ``STAT_FIELDS`` stacked on its first axis."""
    return f"{METRICS}/{CHANNEL_STATS}/{array_key(name)}"


def featviz_path(name: str) -> str:
    """(E, C, S, S, 3) uint8: each visualised channel's image at each epoch."""
    return f"{FEATVIZ}/{array_key(name)}"


def metric_path(metric: str) -> str:
    return f"{METRICS}/{metric}"


def example_path(name: str, field: str) -> str:
    """``examples/<layer>/index|position|value``: one conv layer's top-k per epoch."""
    return f"{EXAMPLES}/{array_key(name)}/{field}"


def example_pool_path(name: str) -> str:
    """``example_pool/images`` or ``example_pool/labels``: written once, not per epoch."""
    return f"{EXAMPLE_POOL}/{name}"


def probe_path(name: str) -> str:
    """``images``, ``labels`` or ``display``: the arrays written once, not per epoch."""
    return f"{PROBES}/{name}"


def written_once(path: str) -> bool:
    """Whether the array at ``path`` is written at creation (probes, example pool) rather
    than one slot per epoch."""
    return path.startswith((f"{PROBES}/", f"{EXAMPLE_POOL}/"))
