"""One image or many: ``tiling`` (tiles with context margins), ``batch`` (same-size images per network pass),
``effort`` (per-image latent optimization), ``jobs`` (coding many files) and ``distributed`` (Ray)."""
