"""The bottom layer: what every other part uses and which imports nothing of the codec above it.

``exact`` (integer-exact networks), ``engine`` (rANS tables, precision, threads), ``tensors``, ``quality``
(the λ ladder and effort levels), ``lean`` (CompressAI without its heavy extras), ``devices``, ``errors`` and
``progress`` (progress bars).
"""
