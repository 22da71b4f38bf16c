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

The store write runs on a background thread: ``epoch()`` returns once the model has been
captured into numpy copies, and the write (compression and a few hundred small files for a
resnet) overlaps the next epoch's training instead of holding it up. The commit protocol
is the writer's, unchanged (``epochs_committed`` last), so a crash mid-write loses only
that epoch. The next ``epoch()``, ``flush()``, ``close()`` or ``epochs_committed`` waits for
the write in flight and raises its error, if any.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from generator.data import to_model_input
from generator.errors import (
    ModelOutputError,
    OptionError,
    RecorderClosedError,
    StoreError,
)
from generator.record.examples import DEFAULT_TOP_K, prepare_pool, resumed_pool, top_examples
from generator.record.featviz import (
    DEFAULT_STEPS,
    FeatvizSettings,
    follow_store,
    visualizer_for,
)
from generator.record.hooks import Captured, capture_outputs, untouched
from generator.record.layers import LayerChoice, describe_layers, trace
from generator.record.probes import (
    DEFAULT_COUNT,
    ProbeSet,
    Transform,
    model_input_like,
    prepare_probes,
)
from generator.store import (
    ACTIVATION_DTYPES,
    EpochRecord,
    ExamplePoolRecord,
    LayerSpec,
    StoreURL,
    StoreWriter,
    open_run,
    store_location,
)

log = logging.getLogger(__name__)

WRITE_THREAD = "netlapse-write"

NAMED_SCALARS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


class Recorder:
    """Records ``model`` on fixed probe images into the run store ``out``, one epoch a call.

    Creating it records epoch 0 (the model as it is now); each ``epoch()`` appends the
    next. ``resume=True`` continues the store ``out`` (created when missing). Usable as a
    context manager; ``close()`` releases the store's write lock.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        probes: Any,
        out: str | Path | StoreURL,
        class_names: Sequence[str] | None = None,
        layers: Iterable[LayerChoice] | None = None,
        probe_labels: Sequence[int] | None = None,
        probe_count: int = DEFAULT_COUNT,
        input_size: int | None = None,
        transform: Transform = to_model_input,
        activation_dtype: str = "float16",
        resume: bool = False,
        training: Mapping[str, Any] | None = None,
        featviz_layers: Sequence[str] | None = None,
        featviz_steps: int = DEFAULT_STEPS,
        example_pool: Any = None,
        example_top_k: int = DEFAULT_TOP_K,
        probe_sources: Sequence[str] | None = None,
        layer_specs: Sequence[LayerSpec] | None = None,
        initial_metrics: Mapping[str, Any] | None = None,
        writer: StoreWriter | None = None,
        site: str | Path | None = None,
    ) -> None:
        """``probe_sources`` names where each probe came from (shown in the gallery);
        ``layer_specs`` are layers already described (the built-in loop's reference CNN
        names its blocks itself), used instead of ``layers``; ``initial_metrics`` are the
        ``epoch()`` metrics of epoch 0 when this call records it; ``writer`` is the store
        ``out`` already opened to append (the built-in loop checks and rewinds it before
        its model is ready), which implies ``resume``; ``site`` keeps a gallery there
        current: rebuilt in the background after every epoch, complete after ``close()``."""
        if activation_dtype not in ACTIVATION_DTYPES:
            raise OptionError(
                f"activation_dtype={activation_dtype!r}: use one of {', '.join(ACTIVATION_DTYPES)}"
            )
        self.model, self.out = model, store_location(out)  # a path or an s3://... URL
        self._dtype = getattr(torch, activation_dtype)
        self._writer: StoreWriter | None = None
        self._writing: Future[None] | None = None  # the epoch being written, if any
        self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WRITE_THREAD)
        self._probes = prepare_probes(
            probes,
            labels=probe_labels,
            input_size=input_size,
            count=probe_count,
            transform=transform,
        )
        if probe_sources is not None:
            self._probes = replace(self._probes, sources=_sources(probe_sources, self._probes))
        example = model_input_like(self._probes.inputs[:1], model)
        if layer_specs is None:
            found, described = describe_layers(model, example, layers)
        else:
            found, described = trace(model, example), list(layer_specs)
        self.class_names = _class_names(found.output_shape, class_names, self._probes)
        self.layers: list[LayerSpec] = described
        self._modules = {spec.name: model.get_submodule(spec.module) for spec in self.layers}
        self._pool, self._transform = None, transform  # dataset examples; None = off
        if example_pool is not None:
            self._pool = prepare_pool(
                example_pool, input_size=self._probes.size, top_k=example_top_k, transform=transform
            )
        self._followed = self._layer_weights()
        self._featviz = visualizer_for(  # None: featviz_layers=[] or no conv layer recorded
            model,
            self.layers,
            FeatvizSettings(
                layers=None if featviz_layers is None else tuple(featviz_layers),
                steps=featviz_steps,
            ),
            transform=transform,
        )
        self._featviz_chosen = featviz_layers is not None
        self._previous: dict[str, torch.Tensor] | None = None
        settings = {"model": type(model).__name__, "recorded_by": "generator.Recorder"}
        self._initial_metrics = dict(initial_metrics or {})
        self._writer = self._open_store(
            resume=resume,
            settings={**settings, **(training or {})},
            dtype=activation_dtype,
            opened=writer,
        )
        self._live = None if site is None else _live_site(self.out, site)

    def _open_store(
        self,
        *,
        resume: bool,
        settings: Mapping[str, Any],
        dtype: str,
        opened: StoreWriter | None,
    ) -> StoreWriter:
        """The store to append to, with epoch 0 recorded; on any failure the lock is released
        and what was committed before stays."""
        reopened = opened is not None or (resume and self.out.exists())
        writer = self._reopen(dtype, opened) if reopened else self._create(settings, dtype)
        self._writer = writer
        try:
            if reopened:  # the stored example pool, if the store keeps one
                self._pool = resumed_pool(
                    self._pool, writer.example_pool(), transform=self._transform
                )
            if writer.epochs_committed == 0:  # committed before the constructor returns
                self._record(self._metrics(**self._initial_metrics))
                self._wait_for_write()
            else:  # resumed: the model is at the last committed epoch, the change's base
                self._previous = self._weights()
                self._warm_start_featviz(writer.epochs_committed - 1)
        except BaseException:
            self._stop_writing()
            writer.close()
            self._writer = None
            raise
        return writer

    # -- public API ---------------------------------------------------------------------
    @property
    def epochs_committed(self) -> int:
        """Epochs in the store so far (epoch 0 included), once the write in flight is done."""
        writer = self._open_writer()
        self._wait_for_write()
        return writer.epochs_committed

    def flush(self) -> None:
        """Wait until every recorded epoch is committed to the store (``epoch()`` returns
        while its write still runs); raises the write's error, if it failed."""
        self._open_writer()
        self._wait_for_write()

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
        metrics = self._metrics(
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
        return self._open_writer().attrs.run_id

    def close(self) -> None:
        """Shrink the arrays to the committed epochs and release the store (idempotent);
        with ``site=``, then build the finished run's gallery and wait for it."""
        writer, self._writer = self._writer, None
        live, self._live = getattr(self, "_live", None), None
        try:
            if writer is not None:
                try:
                    self._wait_for_write()
                    writer.trim()
                finally:
                    self._stop_writing()
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
        if writer is not None:
            try:
                self._wait_for_write()  # the epoch in flight is kept, not cut short
            except Exception as exc:  # noqa: BLE001 - the loop's own error is the one to raise
                log.warning("%s", exc)
            finally:
                self._stop_writing()
                writer.close()
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
        writer = getattr(self, "_writer", None)
        if writer is not None:
            self._stop_writing()  # lets the write in flight finish
            writer.close()

    # -- store ----------------------------------------------------------------------------
    def _create(self, settings: Mapping[str, Any], activation_dtype: str) -> StoreWriter:
        if self.out.exists():
            raise StoreError(
                f"{self.out}: already exists; pass resume=True to continue that run or "
                "choose another out= (a run is never overwritten)"
            )
        probes, pool = self._probes, self._pool
        return StoreWriter.create(
            self.out,
            class_names=self.class_names,
            layers=self.layers,
            input_size=probes.size,
            training=settings,
            probe_images=probes.images,
            probe_labels=probes.labels,
            probe_sources=probes.sources,
            activation_dtype=activation_dtype,
            featviz=self._featviz.spec if self._featviz else None,
            example_pool=None if pool is None else ExamplePoolRecord(*pool.stored()),
        )

    def _warm_start_featviz(self, epoch: int) -> None:
        """Continue the feature visualizations from the store's images of ``epoch``."""
        if self._featviz is not None:
            run = open_run(self.out, verify=False)
            self._featviz.warm_start(
                {n: run.featviz(n, epoch) for n in self._featviz.spec.channels}
            )

    def _reopen(self, activation_dtype: str, opened: StoreWriter | None) -> StoreWriter:
        """The existing store, if it records this model on these probes; else one line."""
        writer = opened or StoreWriter.open_for_resume(self.out)
        attrs = writer.attrs.to_json()
        if not self._featviz_chosen:  # featviz_layers not given: continue as the store did
            self._featviz = follow_store(self._featviz, attrs.get("featviz"))
        ours = {
            "layers": [spec.to_json() for spec in self.layers],
            "class_names": list(self.class_names),
            "activation_dtype": activation_dtype,
            "input_size": self._probes.size,
            "featviz": self._featviz.spec.to_json() if self._featviz else None,
        }
        for key, value in ours.items():
            if attrs.get(key) != value:
                writer.close()
                raise StoreError(
                    f"{self.out}: resume=True with a different {key.replace('_', ' ')} than "
                    "the store was recorded with; pass the same model, probes and "
                    "class_names, or another out="
                )
        if not np.array_equal(writer.probe_images(), self._probes.images):
            writer.close()
            raise StoreError(
                f"{self.out}: resume=True with other probe images than the store's; "
                "pass the same probes"
            )
        return writer

    def _open_writer(self) -> StoreWriter:
        if self._writer is None:
            raise RecorderClosedError(
                f"{self.out}: this Recorder is closed; create Recorder(..., resume=True) "
                "to record more epochs"
            )
        return self._writer

    # -- the background write -------------------------------------------------------------
    def _wait_for_write(self) -> None:
        """Wait for the epoch being written; its error (a ``StoreError``) is raised here.
        The write is forgotten only once it is done: a wait cut short (Ctrl-C) leaves it
        for the next wait, so its error is still seen and no epoch number runs ahead."""
        writing = getattr(self, "_writing", None)
        if writing is None:
            return
        try:
            writing.result()
        finally:
            if writing.done():
                self._writing = None

    def _stop_writing(self) -> None:
        """End the write thread, after the write in flight (if any) has finished (not from
        the write thread itself, which cannot wait for itself)."""
        thread = getattr(self, "_write_thread", None)
        if thread is not None and not threading.current_thread().name.startswith(WRITE_THREAD):
            thread.shutdown(wait=True)

    def _commit_in_background(self, writer: StoreWriter, epoch: int, record: EpochRecord) -> None:
        """Write and commit ``epoch`` on the write thread; the live site hears of it at once.
        The job holds the writer and the live site, not the Recorder, so a Recorder dropped
        without ``close()`` is never finalised on the write thread."""
        live = getattr(self, "_live", None)

        def write() -> None:
            writer.write_epoch(epoch, record)
            if live is not None:
                live.committed()

        self._writing = self._write_thread.submit(write)

    # -- one record -----------------------------------------------------------------------
    def _metrics(self, *, confusion: Any = None, **scalars: Any) -> EpochRecordInputs:
        """The loop's metrics as stored: the named scalars, any extra ones, the confusion."""
        return EpochRecordInputs(
            scalars={
                k: _number(k, v) for k, v in scalars.items() if v is not None and k in NAMED_SCALARS
            },
            extra={
                k: _number(k, v)
                for k, v in scalars.items()
                if v is not None and k not in NAMED_SCALARS
            },
            confusion=None if confusion is None else self._confusion(confusion),
        )

    def _record(self, metrics: EpochRecordInputs) -> int:
        """Capture the model into an ``EpochRecord`` of numpy copies (nothing in it shares
        memory with a tensor training goes on to change) and hand it to the write thread."""
        writer = self._open_writer()
        self._wait_for_write()  # the previous epoch: written while this one trained
        captured, logits = self._capture()
        missing = [spec.name for spec in self.layers if spec.name not in captured.activations]
        if missing:
            raise ModelOutputError(
                f"layer {missing[0]} gave no tensor output on the probes this time; pass "
                "layers= without it"
            )
        epoch = writer.epochs_committed
        weights = self._weights()
        record = EpochRecord(
            activations={k: v.cpu().numpy() for k, v in captured.activations.items()},
            channel_stats={
                name: {stat: v.cpu().numpy() for stat, v in stats.items()}
                for name, stats in captured.channel_stats.items()
            },
            kernels=self._kernels(),
            weight_change=self._weight_change(weights),
            probe_probs=torch.softmax(logits.float(), dim=1).cpu().numpy(),
            confusion=metrics.confusion,
            scalars=metrics.scalars,
            extra=metrics.extra,
            featviz=self._featviz.visualize(epoch) if self._featviz else {},
            examples={}
            if self._pool is None
            else top_examples(self.model, self._pool, self.layers),
        )
        self._commit_in_background(writer, epoch, record)
        self._previous = weights
        return epoch

    def _capture(self) -> tuple[Captured, torch.Tensor]:
        with untouched(self.model), capture_outputs(self._modules, dtype=self._dtype) as got:
            logits = self.model(model_input_like(self._probes.inputs, self.model))
        return got, logits.detach()

    def _kernels(self) -> dict[str, np.ndarray]:
        """Copies of the kernels: ``.float()`` of a float32 weight is the weight itself, which
        the optimizer changes in place while the write thread still reads it."""
        return {
            spec.name: self.model.get_submodule(spec.weights)
            .weight.detach()
            .to("cpu", torch.float32, copy=True)
            .numpy()
            for spec in self.layers
            if spec.kernel_shape is not None and spec.weights
        }

    def _layer_weights(self) -> dict[str, list[str]]:
        """Layer name -> the parameters its weight change follows: its kernel (or matrix),
        or every parameter of a block."""
        found = {}
        for spec in self.layers:
            if spec.weights:
                found[spec.name] = [f"{spec.weights}.weight"]
            elif spec.params:
                owner = self.model.get_submodule(spec.module)
                found[spec.name] = [f"{spec.module}.{n}" for n, _ in owner.named_parameters()]
        return found

    def _weights(self) -> dict[str, torch.Tensor]:
        """CPU float32 copies of every parameter a layer follows, each copied once (a block
        shares its convs' kernels)."""
        wanted = {name for names in self._followed.values() for name in names}
        return {
            name: p.detach().float().cpu().clone()
            for name, p in self.model.named_parameters(remove_duplicate=False)
            if name in wanted
        }

    def _weight_change(self, weights: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """||W - W_prev|| / ||W_prev|| per layer; NaN only at epoch 0 (a resumed recorder
        starts from the model as it is when the store is reopened)."""
        if self._previous is None:
            return {name: math.nan for name in self._followed}
        previous = self._previous
        moved = {n: float(torch.dist(weights[n], previous[n])) ** 2 for n in weights}
        size = {n: float(torch.linalg.vector_norm(previous[n])) ** 2 for n in weights}
        change = {}
        for layer, names in self._followed.items():
            norm = math.sqrt(sum(size[n] for n in names))
            change[layer] = math.sqrt(sum(moved[n] for n in names)) / norm if norm else math.nan
        return change

    def _confusion(self, confusion: Any) -> np.ndarray:
        matrix = np.asarray(
            confusion.detach().cpu() if isinstance(confusion, torch.Tensor) else confusion
        )
        k = len(self.class_names)
        if matrix.shape != (k, k) or not np.issubdtype(matrix.dtype, np.integer):
            raise OptionError(
                f"confusion= has shape {matrix.shape} and dtype {matrix.dtype}; pass a "
                f"({k}, {k}) integer matrix of counts, rows = true class"
            )
        return matrix.astype(np.int64)


@dataclass
class EpochRecordInputs:
    """The metrics one record stores besides what the recorder measures itself."""

    scalars: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    confusion: np.ndarray | None = None


def _number(name: str, value: Any) -> float:
    """A metric as a float (Python, numpy or one-element torch number), or one line."""
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        raise OptionError(f"metric {name}={value!r} is not a number; pass a float") from None


def _sources(sources: Sequence[str], probes: ProbeSet) -> list[str]:
    """Where each probe came from, one text per probe."""
    if len(sources) != len(probes.labels):
        raise OptionError(
            f"probe_sources has {len(sources)} entries for {len(probes.labels)} probes; "
            f"pass {len(probes.labels)}"
        )
    return [str(source) for source in sources]


def _class_names(
    output_shape: tuple[int, ...] | None, given: Sequence[str] | None, probes: ProbeSet
) -> list[str]:
    """The class names, checked against the model's logits (N, K)."""
    if output_shape is None or len(output_shape) != 1 or output_shape[0] < 2:
        shown = "no tensor" if output_shape is None else f"{tuple(output_shape)} per probe"
        raise ModelOutputError(
            f"the model returns {shown}; netlapse records "
            "classifiers that return logits (N, classes) with at least 2 classes"
        )
    k = output_shape[0]
    names = list(given) if given is not None else probes.class_names
    if names is None:
        return [f"class {i}" for i in range(k)]
    if len(names) != k:
        raise ModelOutputError(
            f"class_names has {len(names)} names but the model returns {k} logits; pass {k} names"
        )
    return [str(name) for name in names]


def _live_site(out: Any, site: str | Path) -> Any:
    """A ``LiveSite`` for ``site``, with the epochs committed so far built at once. The
    import is deferred: the live site runs ``build`` in another process, so recording
    never loads the build stage; only a ``site=`` run needs the launcher."""
    from generator.build import LiveSite

    live = LiveSite(out, site)
    live.committed()
    return live
