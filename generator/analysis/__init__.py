"""Numbers derived from a run store for the gallery: read through ``generator.reader``,
computed in memory, no drawing and no HTML (the site shows them).

``cka``: linear CKA of every layer's probe activations against the last epoch and
between layers, and the epoch each layer settles.
"""
