"""Weights: ``store`` (load and check the shipped networks), ``manifest`` (read without torch), ``handle``
(``Codec``, a loaded model with its identity) and ``shipping`` (which distribution carries which file).

In an installed wheel the weights themselves are the package data ``codec.weights.shipped`` (the repository's
``weights/`` folder); from a checkout ``weights/`` is read in place. This ``__init__`` imports nothing: reading
the manifest must not load torch.
"""
