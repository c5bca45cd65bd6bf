"""The per-image (overfitted) codec behind model kind ``overfit`` (``codec.models.overfit.model``).

``network``: the decoder (latent grids, ARM, upsampling, synthesis) and its cost; ``laplace``: the coding
tables, the same on every machine; ``coding``: its two streams per tile; ``fit``: the encoder's optimization.
"""
