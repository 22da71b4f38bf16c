"""The built-in training loop (``python -m generator train``), recording every epoch
through ``generator.Recorder``: ``session`` sets a run up (``--out`` checks, data, the
``--model`` network, probes), ``resume`` continues a stopped run from its checkpoints, and
``loop`` trains, evaluates, records and checkpoints each epoch."""

from generator.train.loop import evaluate, run_training
from generator.train.session import check_out, split_indices

__all__ = ["check_out", "evaluate", "run_training", "split_indices"]
