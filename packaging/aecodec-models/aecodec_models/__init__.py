"""Weights of aecodec's earlier models (safetensors files beside this module), found by ``codec.weights.manifest``.

Nothing to import: aecodec locates this package's folder and checks each file against its own manifest's
sha256 before use.
"""
