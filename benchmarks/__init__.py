"""Rate-distortion and speed benchmarks of aecodec against Pillow's codecs and published curves.

``python -m benchmarks.rd --data DIR`` and ``python -m benchmarks.speed --data DIR``; results land in
``benchmarks/results/``.
"""
