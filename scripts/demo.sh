#!/usr/bin/env bash
# The main job: set up, then encode and decode the bundled sample with the shipped weights.
source "$(dirname "$0")/env.sh"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
aecodec encode scripts/sample.png -o "$OUT/sample.aec" ${1:+-q "$1"}  # default quality unless given
aecodec decode "$OUT/sample.aec" -o "$OUT/sample.png"
aecodec info "$OUT/sample.aec"
python - "$OUT" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from codec.core.tensors import psnr

out = Path(sys.argv[1])
a = np.asarray(Image.open("scripts/sample.png").convert("RGB"))
b = np.asarray(Image.open(out / "sample.png").convert("RGB"))
bpp = (out / "sample.aec").stat().st_size * 8 / (a.shape[0] * a.shape[1])
print(f"sample.png {a.shape[1]}x{a.shape[0]}: {bpp:.3f} bpp, PSNR {psnr(a, b):.2f} dB")
PY
