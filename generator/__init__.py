"""netlapse: watch a convolutional network learn.

Stages, in the order data flows (imports only go down this list): ``data`` -> ``model`` ->
``train`` + ``recorder`` -> ``store`` -> ``reader`` -> ``render`` -> ``encode`` ->
``artefacts``/``build`` -> ``site``. ``__main__`` is the only module that knows them all.
"""

__version__ = "0.1.0"
