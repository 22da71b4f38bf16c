"""What a live gallery adds to a build: ``live.json`` and the state pages poll.

Every build writes ``live.json`` (``{"built": ..., "training": ...}``), so the files of
the last build after training ends equal those of a separate ``build``. A page rendered
while the run still trains (``build --live``) carries ``data-live``/``data-built`` and
``static/live.js``, which fetches ``live.json`` every few seconds and reloads once
``built`` differs: the next epoch has been built, or training has ended.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from generator.site.manifest import Manifest

LIVE_FILE = "live.json"


@dataclass(frozen=True)
class LiveStatus:
    """``training``: pages say the run still trains and poll; ``built``: an id of what
    this build shows (its runs and epochs), the same for the same state; ``epochs``: the
    most epochs any run shows."""

    training: bool
    built: str
    epochs: int


def live_status(manifest: Manifest, *, training: bool) -> LiveStatus:
    """The status of the site ``manifest`` describes."""
    shown = sorted((run.slug, run.epochs) for run in manifest.runs)
    digest = hashlib.sha256(json.dumps([shown, training]).encode()).hexdigest()[:16]
    epochs = max((epochs for _, epochs in shown), default=0)
    return LiveStatus(training=training, built=digest, epochs=epochs)


def live_file(status: LiveStatus) -> bytes:
    """``live.json``: what an open page compares its own ``data-built`` with."""
    payload = {"built": status.built, "training": status.training, "epochs": status.epochs}
    return (json.dumps(payload, sort_keys=True) + "\n").encode()
