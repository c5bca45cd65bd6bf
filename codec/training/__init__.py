"""Training: ``train`` (the loop), ``config`` (``TrainConfig``), ``data`` (crops), ``sprint`` (the GPU sprint's
packs) and ``export`` (a checkpoint to ``weights/``). Never imported by ``codec.coding`` (nor the reverse)."""
