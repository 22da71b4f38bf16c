"""One store behaviour suite that every backend runs, like zarr-python's ``StoreTests``.

``StoreBehaviour`` holds the tests; each backend subclasses it and provides ``location``,
a fresh store location per test: ``TestLocalStore`` a folder, ``TestObjectStore`` an
``s3://`` URL on moto's S3 server on 127.0.0.1 (the fixtures of ``test_store_backends``).
A backend passes when a store written there behaves as the schema promises: created
empty, epochs appended and committed one at a time, every array read back as written,
one writer at a time, readers clipped to the committed epochs.
"""

from __future__ import annotations

import numpy as np
import pytest

from generator.errors import StoreError
from generator.store import EpochRecord, RootAttrs, StoreLocation, StoreWriter, open_run
from generator.store._backends import store_location
from generator.store._records import flatten_record
from generator.store._schema import array_plan_of, parse_root_attrs, written_once
from tests.conftest import make_store, synthetic_record
from tests.test_store_backends import bucket, s3_server  # noqa: F401 - fixtures

EPOCHS = 2


def written_record(epoch: int, *, optional: bool = False) -> EpochRecord:
    """The record ``make_store`` writes for ``epoch``; ``optional``: with feature
    visualizations and dataset examples."""
    record = synthetic_record(epoch, examples=optional)
    if optional:
        record.featviz = {"block1": np.full((2, 8, 8, 3), epoch, np.uint8)}
    return record


def new_store(
    location: StoreLocation, *, epochs: int = EPOCHS, optional: bool = False
) -> StoreWriter:
    """A tiny store, still open; ``optional`` adds every optional part (visualizations,
    dataset examples: twice the arrays, so only where a test needs them)."""
    return make_store(location, epochs, trim=False, featviz=optional, examples=optional)


class StoreBehaviour:
    """The behaviour tests; a subclass per backend provides the ``location`` fixture."""

    @pytest.fixture
    def location(self) -> StoreLocation:
        raise NotImplementedError("a backend's subclass provides a fresh store location")

    def test_a_new_store_has_no_epochs_and_reads_as_empty(self, location: StoreLocation) -> None:
        writer = new_store(location, epochs=0)
        writer.close()
        run = open_run(location)
        assert run.epochs == 0 and run.attrs.epochs_committed == 0
        assert run.layer_activations("block1").shape == (0, 2, 4, 8, 8)

    def test_epochs_are_appended_and_committed_in_order(self, location: StoreLocation) -> None:
        writer = new_store(location)
        assert writer.epochs_committed == EPOCHS
        with pytest.raises(StoreError, match="cannot write epoch 5"):
            writer.write_epoch(5, written_record(5))
        writer.close()
        assert open_run(location).epochs == EPOCHS

    def test_every_array_reads_back_as_written(self, location: StoreLocation) -> None:
        new_store(location, optional=True).close()
        run = open_run(location)
        plan = array_plan_of(run.attrs, run.n_probes)
        for epoch in range(EPOCHS):
            record = written_record(epoch, optional=True)
            written = flatten_record(record, layers=run.attrs.layers)
            assert set(written) == {name for name in plan if not written_once(name)}
            for name, value in written.items():
                expected = np.asarray(value, dtype=plan[name].dtype)
                np.testing.assert_array_equal(run._read(name, index=(epoch,)), expected)
        np.testing.assert_array_equal(run.probe_labels, np.arange(2))
        np.testing.assert_array_equal(run.example_labels, np.arange(5) % 3)

    def test_the_root_attributes_are_the_typed_description(self, location: StoreLocation) -> None:
        writer = new_store(location)
        attrs = writer.attrs
        writer.close()
        run = open_run(location)
        assert isinstance(run.attrs, RootAttrs) and run.attrs == attrs
        assert run.attrs.run_id and run.attrs.extra_metrics is not None
        assert parse_root_attrs(location, run.attrs.to_json()) == run.attrs

    def test_a_reopened_store_appends_after_its_committed_epochs(
        self, location: StoreLocation
    ) -> None:
        new_store(location).close()
        writer = StoreWriter.open_for_resume(location)
        writer.write_epoch(EPOCHS, written_record(EPOCHS))
        writer.trim()
        writer.close()
        run = open_run(location)
        assert run.epochs == EPOCHS + 1
        np.testing.assert_array_equal(run.confusion()[-1], np.eye(3) * (EPOCHS + 1))

    def test_a_second_writer_is_refused_while_the_first_holds_the_lock(
        self, location: StoreLocation
    ) -> None:
        writer = new_store(location)
        with pytest.raises(StoreError, match="another process is writing"):
            StoreWriter.open_for_resume(location)
        writer.close()
        StoreWriter.open_for_resume(location).close()  # released: a later writer may

    def test_an_existing_store_is_never_replaced(self, location: StoreLocation) -> None:
        new_store(location).close()
        with pytest.raises(StoreError, match="already exists"):
            new_store(location)
        assert open_run(location).epochs == EPOCHS

    def test_readers_see_only_the_committed_epochs(self, location: StoreLocation) -> None:
        writer = new_store(location)
        writer.rewind(1)  # the arrays keep two epochs' slots; one is committed
        writer.close()
        run = open_run(location)
        assert run.epochs == 1
        assert run.layer_activations("block2").shape[0] == 1
        with pytest.raises(StoreError, match="epoch 1 is not committed"):
            run.layer_at("block2", 1)

    def test_open_run_reads_the_first_epochs_asked_for(self, location: StoreLocation) -> None:
        new_store(location).close()
        run = open_run(location, epochs=1)
        assert run.epochs == 1 and run.attrs.epochs_committed == EPOCHS
        assert run.scalar_metric("val_loss").shape == (1,)
        with pytest.raises(StoreError, match=f"cannot read 3 epochs; the store has {EPOCHS}"):
            open_run(location, epochs=3)


class TestLocalStore(StoreBehaviour):
    @pytest.fixture
    def location(self, tmp_path) -> StoreLocation:
        return tmp_path / "run.zarr"


class TestObjectStore(StoreBehaviour):
    @pytest.fixture
    def location(self, bucket: str) -> StoreLocation:  # noqa: F811 - the imported fixture
        return store_location(f"s3://{bucket}/runs/run.zarr")
