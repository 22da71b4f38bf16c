"""The reference architecture's numbers, importable without torch.

``config`` needs them for defaults and ``model`` builds from them; keeping them here lets
``build`` and its worker processes start without importing torch.
"""

REFERENCE_CHANNELS = (16, 32, 32, 64, 64, 128, 128, 256)
REFERENCE_KERNEL = 5
REFERENCE_HIDDEN = 256
REFERENCE_MODEL = "reference"  # ``train --model``'s name for this network
