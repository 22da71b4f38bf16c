"""netlapse: watch a convolutional network learn.

Data flows ``data`` -> ``model`` -> ``train`` + ``recorder`` -> ``store`` -> ``reader`` ->
``render`` -> ``encode`` -> ``artefacts``/``build`` -> ``site``. Which module may import
which is written once, as stages, in ``tests/test_imports.py`` (and checked there);
``__main__`` is the only module that knows them all.
"""

__version__ = "0.1.0"
