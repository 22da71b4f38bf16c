"""What goes into each epoch's record (the capture, plus the per-channel work), and the
store's first epoch (``open_store``).

``EpochMaker`` holds what one record needs from the one before it: the weights (the base
of the next weight change) and the feature visualizations (each epoch warm-starts from the
last); a resumed run takes both from where the store left off. The record is made in full
before it goes to the writer, of copies only, so training may go on at once.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from generator.defaults import GRADIENT_EVERY, GRADIENT_SHARE, HISTOGRAM_BINS
from generator.record.budget import OverheadBudget
from generator.record.capture import Metrics, ModelCapture, Weights
from generator.record.examples import resumed_pool, top_examples
from generator.record.featviz import visualizer_for
from generator.record.gradients import GradientMonitor
from generator.record.opening import (
    RecorderSetup,
    create_store,
    refuse_existing,
    remove_created,
    reopen_store,
)
from generator.record.sampling import PassSampler
from generator.record.writer import BackgroundWriter
from generator.store import HISTOGRAM_KINDS, EpochRecord, StoreWriter, open_run


class EpochMaker:
    """Makes the epoch records of ``model`` for ``setup``: the capture, the feature
    visualizations (``featviz``; None = off) and the dataset examples (``pool``)."""

    def __init__(self, model: nn.Module, setup: RecorderSetup) -> None:
        self.model, self.layers = model, setup.layers
        self._capture = ModelCapture(
            model,
            setup.layers,
            setup.probes.inputs,
            dtype=getattr(torch, setup.activation_dtype),
            output=setup.output,
        )
        self.featviz = visualizer_for(  # None: featviz_layers=[] or no conv layer recorded
            model,
            setup.layers,
            setup.featviz,
            transform=setup.transform,
            input_shape=_shape_of(setup.probes.inputs),
            image_channels=int(setup.probes.images.shape[1]),
        )
        self.pool, self._transform = setup.pool, setup.transform
        self._previous: Weights | None = None  # the base of the next weight change
        self.budget = OverheadBudget(setup.overhead)
        self.writer: BackgroundWriter | None = None  # its write and wait times are charged
        self._examples: dict[str, dict[str, np.ndarray]] = {}  # the last ones found
        self.gradients = (  # hooks from now on: they gather while the user trains
            GradientMonitor(
                model,
                setup.layers,
                bins=HISTOGRAM_BINS,
                sampler=pass_sampler(setup.overhead, credit=self._credit_now),
            )
            if setup.gradients
            else None
        )

    def _credit_now(self, monitor: float) -> float:
        """The budget's credit in the middle of training, given the gradient monitor's
        total ``monitor`` seconds and the writes finished so far."""
        writes = self.writer.write_seconds if self.writer is not None else 0.0
        return self.budget.live_credit(monitor=monitor, writes=writes)

    def settle(self) -> None:
        """Recording inside ``Recorder()`` ends: its wall time (epoch 0's write and the
        wait for it included) is charged once, not again at the first ``epoch()``."""
        writer = self.writer
        if writer is not None:
            self.budget.settle(writes=writer.write_seconds, waits=writer.wait_seconds)
        self.budget.end()

    def close(self) -> None:
        """Remove the gradient hooks (idempotent): the model trains on without them."""
        if self.gradients is not None:
            self.gradients.close()

    def record(self, epoch: int, metrics: Metrics) -> EpochRecord:
        """The model now as ``epoch``'s record, with its metrics and per-channel work. Works
        inside a validation loop's ``inference_mode`` or ``no_grad``: none of it makes
        tensors training could not use, and feature visualization gets its gradients."""
        writer = self.writer
        self.budget.begin(
            writes=writer.write_seconds if writer else 0.0,
            waits=writer.wait_seconds if writer else 0.0,
            monitor=self.gradients.sampler.seconds if self.gradients else 0.0,
        )
        with torch.inference_mode(False), self._own_passes():
            record, weights = self._capture.record(metrics, previous=self._previous)
            with torch.enable_grad():
                featviz, steps = self._featviz(epoch)
            examples, found = self._dataset_examples()
            gradients = self.gradients.take(record.activations, weights) if self.gradients else {}
        record = replace(
            record,
            gradients=gradients,
            featviz=featviz,
            examples=examples,
            featviz_skipped=dict(self.featviz.skipped) if self.featviz else {},
            budget=self.budget.note(steps, found),
        )
        self._previous = weights
        self.budget.end()
        return record

    def _own_passes(self) -> AbstractContextManager[None]:
        """While the record runs, its own backward passes are not training's."""
        return self.gradients.pause() if self.gradients is not None else nullcontext()

    def _featviz(self, epoch: int) -> tuple[dict[str, np.ndarray], int | None]:
        """The feature visualizations with the steps the budget allows, and those steps
        (None: featviz is off)."""
        featviz = self.featviz
        if featviz is None:
            return {}, None
        steps = self.budget.featviz_steps(featviz.spec.steps)
        images, seconds = self.budget.timed(lambda: featviz.visualize(epoch, steps=steps))
        if steps is not None:
            done = steps
        else:  # no limit: the spec's steps, from noise at epoch 0
            done = featviz.spec.first_steps if epoch == 0 else featviz.spec.steps
        if done:
            self.budget.step_cost = seconds / done
        return images, done

    def _dataset_examples(self) -> tuple[dict[str, dict[str, np.ndarray]], bool | None]:
        """The dataset examples (the last ones again when the budget leaves them out), and
        whether they were found this epoch (None: no example pool)."""
        if self.pool is None:
            return {}, None
        if self._examples and not self.budget.examples_due():
            return self._examples, False
        pool = self.pool
        found, seconds = self.budget.timed(lambda: top_examples(self.model, pool, self.layers))
        self._examples, self.budget.examples_cost = found, seconds
        return found, True

    def use_stored_pool(self, store: StoreWriter) -> None:
        """A reopened store's example pool (a pool given again must be that one; a store
        without examples gets none)."""
        self.pool = resumed_pool(self.pool, store.example_pool(), transform=self._transform)

    def continue_after(self, store: StoreWriter, epoch: int) -> None:
        """A resumed run: the model is at the store's last committed ``epoch``, the base of
        the next change, and the feature visualizations go on from that epoch's images."""
        self._previous = self._capture.weights()
        self._follow_gradients(store, epoch)
        if self.featviz is not None:
            run = open_run(store.path, verify=False)
            self.featviz.warm_start({n: run.featviz(n, epoch) for n in self.featviz.spec.channels})

    def _follow_gradients(self, store: StoreWriter, epoch: int) -> None:
        """A resumed run keeps gradients as its store does: with the stored histogram
        edges when it has them, none when it has not."""
        run = open_run(store.path, verify=False, epochs=epoch + 1)
        if self.gradients is not None and run.attrs.gradients is None:
            self.gradients.close()
            self.gradients = None
        if self.gradients is None:
            return
        for kind in HISTOGRAM_KINDS:
            stored = run.histograms(kind)
            if stored is not None:
                rows = dict(zip(stored.layers, stored.edges[epoch], strict=True))
                self.gradients.continue_from({kind: rows})


def open_store(
    setup: RecorderSetup,
    epochs: EpochMaker,
    *,
    resume: bool,
    opened: StoreWriter | None,
    first: Metrics,
) -> BackgroundWriter:
    """The writer of ``setup.out``: a new store, or with ``resume`` (or a store ``opened``
    already) the existing one, checked; with epoch 0 committed (``first`` its metrics)
    when the store has none, else going on from its last committed epoch. On any failure
    the lock is released, what was committed before stays and no gradient hook remains."""
    try:
        if opened is not None or (resume and setup.out.exists()):
            store, epochs.featviz = reopen_store(setup, epochs.featviz, opened)
            return _continued(store, epochs, first)
        return _created(setup, epochs, first)
    except BaseException:
        epochs.close()
        raise


def _created(setup: RecorderSetup, epochs: EpochMaker, first: Metrics) -> BackgroundWriter:
    """The writer of a new store with epoch 0 committed; on a failure nothing is left."""
    refuse_existing(setup)
    record = epochs.record(0, first)  # before anything is written: a failure leaves nothing
    writer = epochs.writer = BackgroundWriter(create_store(setup, epochs.featviz))
    try:
        writer.write(0, record)
        writer.wait()
    except BaseException:
        writer.abandon()
        remove_created(setup)
        raise
    epochs.settle()  # creating the store and writing epoch 0 were recording too
    return writer


def _continued(store: StoreWriter, epochs: EpochMaker, first: Metrics) -> BackgroundWriter:
    """The writer of a reopened store: epoch 0 recorded if it has none, else going on from
    its last committed epoch; on a failure the lock is released and the store stays."""
    writer = epochs.writer = BackgroundWriter(store)
    try:
        epochs.use_stored_pool(store)
        if store.epochs_committed == 0:  # committed before the Recorder is returned
            writer.write(0, epochs.record(0, first))
            writer.wait()
        else:
            epochs.continue_after(store, store.epochs_committed - 1)
    except BaseException:
        writer.abandon()
        raise
    epochs.settle()
    return writer


def _shape_of(inputs: torch.Tensor) -> tuple[int, int, int]:
    """The model's input (C, H, W), from the probes it is shown."""
    channels, height, width = inputs.shape[-3:]
    return int(channels), int(height), int(width)


def pass_sampler(overhead: float | None, *, credit: Callable[[float], float]) -> PassSampler:
    """Which backward passes the gradient monitor measures: a share of the overhead budget
    while the budget has ``credit``, or without one every ``GRADIENT_EVERY``-th (a function
    of the pass count alone)."""
    if overhead is None:
        return PassSampler(every=GRADIENT_EVERY)
    return PassSampler(share=overhead * GRADIENT_SHARE, credit=credit)
