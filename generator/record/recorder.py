"""``Recorder``: record any PyTorch classifier from the user's own training loop.

    rec = Recorder(model, probes=images, out="runs/mine.zarr", class_names=names)  # epoch 0
    for epoch in range(n):
        ...train...
        rec.epoch(train_loss=..., val_loss=..., val_accuracy=..., confusion=...)  # epoch k
    rec.close()

Each record is one forward pass of the probes in eval mode under ``no_grad`` with hooks on
the chosen layers (``layers``), then one epoch appended to the store through the one
writer; training is left exactly as it was (``hooks.untouched``). Metrics are optional:
what is not passed is stored as absent. Any scalar passed by another name is kept as an
extra metric.

The Recorder is the API; the work is its collaborators': ``opening`` (what to record, and
the store created or reopened and checked by ``compatible``), ``capture`` (the model as an
epoch record), ``featviz`` and ``examples`` (per-channel work), and ``writer`` (the
background write: ``epoch()`` returns once the model is captured into numpy copies, and
the write overlaps the next epoch's training; the next ``epoch()``, ``flush()``,
``close()`` or ``epochs_committed`` waits for it and raises its error, if any).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from generator.data import to_model_input
from generator.defaults import (
    ACTIVATION_DTYPE,
    FEATVIZ_STEPS,
    GRADIENTS,
    KERNEL_DTYPE,
    OVERHEAD,
    PROBE_COUNT,
)
from generator.errors import RecorderClosedError
from generator.record.budget import check_overhead
from generator.record.capture import Metrics, loop_metrics
from generator.record.epochs import EpochMaker, open_store
from generator.record.examples import DEFAULT_TOP_K, ExamplePool, prepare_pool
from generator.record.featviz import FeatvizSettings
from generator.record.layers import LayerChoice, describe_layers
from generator.record.opening import (
    RecorderSetup,
    check_activation_dtype,
    check_single_calls,
    checked_class_names,
    recorded_settings,
)
from generator.record.outputs import OutputChoice, unwrapped
from generator.record.probes import (
    Display,
    ProbeSet,
    Transform,
    model_input_like,
    prepare_probes,
    with_display,
    with_sources,
)
from generator.record.writer import BackgroundWriter
from generator.store import StoreLocation, StoreURL, StoreWriter, store_location

if TYPE_CHECKING:
    from generator.build import LiveSite

__all__ = ["Recorder", "RecorderClosedError", "training_recorder"]


class Recorder:
    """Records ``model`` on fixed probe images into the run store ``out``, one epoch a call.

    Creating it records epoch 0 (the model as it is now); each ``epoch()`` appends the
    next. Usable as a context manager; ``close()`` releases the store's write lock.

    Args:
        model: the classifier, returning logits (N, classes) (see ``output``); compiled or
            (Distributed)DataParallel, its inner module is recorded, under its own names.
        probes: a (N, C, H, W) tensor (uint8 images or float model input), a list of image
            paths (with ``input_size``) or a dataset of (image, label) pairs.
        out: the run store to create (or continue): a folder or an object-storage URL.
        class_names: one per logit (default: the dataset's classes, else "class i").
        layers: which layers to record (default: the model's convs or blocks and head).
        probe_labels: the probes' true classes (-1 = unknown).
        probe_count: how many probes to pick from a dataset, spread over its classes.
        input_size: the side in pixels of probe images given as paths.
        transform: uint8 images to model input (default: the project's normalisation).
        activation_dtype: how activations are stored, "float16" or "float32".
        kernel_dtype: how conv kernels are stored, "float16" or "float32".
        overhead: the share of the training time between ``epoch()`` calls recording may
            take (the feature visualizations and dataset examples adapt; what they leave
            out is said in the store); None = no limit.
        resume: continue the store ``out`` (created when missing): same model, probes
            and class names.
        training: settings to keep with a new store (shown in the gallery).
        featviz_layers: layers to visualise per channel ([] = off; default: the first two
            conv layers, or on resume what the store did).
        featviz_steps: feature-visualization steps per epoch.
        example_pool: images (any form ``probes`` takes) whose top ones per channel are
            found every epoch; None = off.
        example_top_k: how many top images each channel keeps.
        probe_sources: where each probe came from (shown in the gallery).
        site: a gallery folder kept current in the background after every epoch, and
            complete after ``close()``.
        output: the logits in the model's output: a key or attribute, an index or a callable
            (default: the output, its ``.logits`` or its one 2-D tensor; ``pick_logits``).
        display: how probes of neither 1 nor 3 channels are shown, uint8 (P, C, H, W) ->
            (P, 3, H, W), applied here and stored (default: their first three channels).
        gradients: per-layer gradient norms, update/weight ratios and histograms, gathered
            by hooks while the loop trains, changing nothing (``record.gradients``).

    Raises:
        OptionError: a bad option or metric; ProbeError: unusable probes;
        ModelOutputError: a model that does not return logits; StoreError: ``out`` exists
        (without ``resume``), differs from this run (with it), or cannot be written.
    """

    @torch.inference_mode(False)  # a Recorder made in a validation loop makes normal tensors
    def __init__(
        self,
        model: nn.Module,
        *,
        probes: Any,
        out: str | Path | StoreURL,
        class_names: Sequence[str] | None = None,
        layers: Iterable[LayerChoice] | None = None,
        probe_labels: Sequence[int] | None = None,
        probe_count: int = PROBE_COUNT,
        input_size: int | None = None,
        transform: Transform = to_model_input,
        activation_dtype: str = ACTIVATION_DTYPE,
        resume: bool = False,
        training: Mapping[str, Any] | None = None,
        featviz_layers: Sequence[str] | None = None,
        featviz_steps: int = FEATVIZ_STEPS,
        example_pool: Any = None,
        example_top_k: int = DEFAULT_TOP_K,
        probe_sources: Sequence[str] | None = None,
        site: str | Path | None = None,
        output: OutputChoice = None,
        display: Display | None = None,
        kernel_dtype: str = KERNEL_DTYPE,
        overhead: float | None = OVERHEAD,
        gradients: bool = GRADIENTS,
    ) -> None:
        _check_options(activation_dtype, kernel_dtype=kernel_dtype, overhead=overhead)
        model = unwrapped(model)  # a compiled or (Distributed)DataParallel model's own names
        chosen = _probe_set(
            probes,
            labels=probe_labels,
            input_size=input_size,
            count=probe_count,
            transform=transform,
            sources=probe_sources,
            display=display,
        )
        sample = model_input_like(chosen.inputs[:1], model)
        found, described = describe_layers(model, sample, layers, output=output)
        names = checked_class_names(found.output_shape, class_names, chosen)
        pool = _example_pool(example_pool, chosen, top_k=example_top_k, transform=transform)
        check_single_calls(found, described, pool)
        setup = RecorderSetup(
            out=store_location(out),  # a path or an s3://... URL
            probes=chosen,
            class_names=names,
            layers=described,
            transform=transform,
            activation_dtype=activation_dtype,
            training=recorded_settings(model, training or {}),
            featviz=FeatvizSettings(layers=_tuple(featviz_layers), steps=featviz_steps),
            pool=pool,
            site=site,
            output=output,
            kernel_dtype=kernel_dtype,
            overhead=overhead,
            gradients=gradients,
        )
        self._start(model, setup, resume=resume)

    def _start(
        self,
        model: nn.Module,
        setup: RecorderSetup,
        *,
        resume: bool,
        initial_metrics: Mapping[str, Any] | None = None,
        opened: StoreWriter | None = None,
    ) -> None:
        """What both doors share: the store (epoch 0 recorded when it has none, with
        ``initial_metrics``), then the live site."""
        self.model, self.out = model, setup.out
        self.class_names, self.layers = setup.class_names, setup.layers
        self._writer: BackgroundWriter | None = None
        self._live: LiveSite | None = None
        if setup.site is not None:  # refused now, not when the first build runs
            _check_site(setup.out, setup.site)
        self._epochs = EpochMaker(model, setup)
        self._writer = open_store(
            setup,
            self._epochs,
            resume=resume,
            opened=opened,
            first=loop_metrics(len(self.class_names), **(initial_metrics or {})),
        )
        if setup.site is not None:
            live = self._live = _live_site(self.out, setup.site)
            self._writer.on_commit = live.committed

    # -- public API ---------------------------------------------------------------------
    @property
    def epochs_committed(self) -> int:
        """Epochs in the store so far (epoch 0 included), once the write in flight is done."""
        return self._open_writer().epochs_committed

    def flush(self) -> None:
        """Wait until every recorded epoch is committed to the store (``epoch()`` returns
        while its write still runs); raises the write's error, if it failed."""
        self._open_writer().wait()

    def epoch(
        self,
        *,
        train_loss: float | None = None,
        train_accuracy: float | None = None,
        val_loss: float | None = None,
        val_accuracy: float | None = None,
        confusion: Any = None,
        **extra: float,
    ) -> int:
        """Record the model now as the next epoch, with whatever metrics the loop has;
        returns that epoch's number. The epoch is committed in the background: ``flush()``
        waits for it."""
        self._open_writer()
        metrics = loop_metrics(
            len(self.class_names),
            train_loss=train_loss,
            train_accuracy=train_accuracy,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            confusion=confusion,
            **extra,
        )
        return self._record(metrics)

    @property
    def run_id(self) -> str | None:
        """The store's run id, which binds the built-in loop's checkpoints to it."""
        return self._open_writer().store.attrs.run_id

    def close(self) -> None:
        """Shrink the arrays to the committed epochs and release the store (idempotent);
        with ``site=``, then build the finished run's gallery and wait for it."""
        writer, self._writer = self._writer, None
        live, self._live = getattr(self, "_live", None), None
        self._epochs.close()  # the gradient hooks
        try:
            if writer is not None:
                writer.close()
        except BaseException:
            if live is not None:
                live.close()  # a failed write: no final build; the last complete site stays
            raise
        if live is not None:
            live.finish()

    def release(self) -> None:
        """Release the store as it is, without the trim: what leaving on an error does, so
        the error that stopped the loop is the one reported (the committed epochs stay)."""
        writer, self._writer = self._writer, None
        self._epochs.close()
        if writer is not None:
            writer.release()  # the epoch in flight is kept, not cut short
        live, self._live = getattr(self, "_live", None), None
        if live is not None:
            live.close()  # the last complete gallery stays

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None:
            self.close()
        else:
            self.release()

    def __del__(self) -> None:
        if hasattr(self, "_epochs"):  # dropped without close(): no hook stays behind
            self._epochs.close()
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.abandon()  # lets the write in flight finish

    # -- inside -----------------------------------------------------------------------------
    def _open_writer(self) -> BackgroundWriter:
        if self._writer is None:
            raise RecorderClosedError(
                f"{self.out}: this Recorder is closed; create Recorder(..., resume=True) "
                "to record more epochs"
            )
        return self._writer

    def _record(self, metrics: Metrics) -> int:
        """Make the next epoch's record (copies only) and hand it to the write thread, once
        the previous epoch, written while this one trained, is committed."""
        writer = self._open_writer()
        epoch = writer.epochs_committed
        writer.write(epoch, self._epochs.record(epoch, metrics))
        return epoch


def training_recorder(
    model: nn.Module,
    setup: RecorderSetup,
    *,
    initial_metrics: Mapping[str, Any] | None,
    writer: StoreWriter | None = None,
) -> Recorder:
    """The built-in loop's Recorder (not public API, so not a constructor parameter):
    ``setup`` is what the loop knows; ``initial_metrics`` are epoch 0's metrics when this
    records it; ``writer`` is the store ``setup.out`` already reopened and rewound by the
    loop (implies resuming)."""
    recorder = Recorder.__new__(Recorder)
    recorder._start(
        unwrapped(model),
        setup,
        resume=writer is not None,
        initial_metrics=initial_metrics or {},
        opened=writer,
    )
    return recorder


def _probe_set(
    probes: Any,
    *,
    sources: Sequence[str] | None,
    display: Display | None,
    **options: Any,
) -> ProbeSet:
    """The probes as the Recorder records them: chosen and transformed
    (``prepare_probes`` with ``options``), with their sources and display pictures."""
    chosen = prepare_probes(probes, **options)
    if sources is not None:
        chosen = with_sources(chosen, sources)
    return with_display(chosen, display)


def _example_pool(pool: Any, probes: ProbeSet, **options: Any) -> ExamplePool | None:
    """The dataset examples' pool (None = off), at the probes' size."""
    if pool is None:
        return None
    channels = int(probes.images.shape[1])
    return prepare_pool(pool, input_size=probes.size, channels=channels, **options)


def _check_options(activation_dtype: str, *, kernel_dtype: str, overhead: float | None) -> None:
    """One line for a storage dtype or an overhead the Recorder cannot use."""
    check_activation_dtype(activation_dtype)
    check_activation_dtype(kernel_dtype, option="kernel_dtype")
    check_overhead(overhead)


def _tuple(names: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if names is None else tuple(names)


def _check_site(out: StoreLocation, site: str | Path) -> None:
    """Refuse a ``site=`` folder that the gallery's build would refuse, before the store
    is created (the import is deferred as in ``_live_site``)."""
    from generator.build.rebuilds import check_site

    check_site(out, site, option="site=")


def _live_site(out: StoreLocation, site: str | Path) -> LiveSite:
    """A ``LiveSite`` for ``site``, with the epochs committed so far built at once. The
    import is deferred: the live site runs ``build`` in another process, so recording
    never loads the build stage; only a ``site=`` run needs the launcher."""
    from generator.build import LiveSite

    live = LiveSite(str(out), site)  # what LiveSite keeps of it: a path or a URL
    live.committed()
    return live
