"""One encode path: every entry (the one-image API, the batch API, the command) checks the options once, loads
the model once and packs each file once, and nothing reads back the bytes it just packed (``-v`` included)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

import codec
from codec.coding import batch, encoding
from codec.coding.options import EncodeOptions
from codec.format import bitstream as bs
from tests.conftest import count_calls
from tests.test_hostile import run


@pytest.fixture
def counted(monkeypatch) -> dict[str, int]:
    """Calls of the steps an encode does once per call (options check, model load) or once per file (pack),
    and of the parse that it should never need."""
    targets = {
        "check": (EncodeOptions, "checked"),
        "load": (encoding, "load_codec"),
        "pack": (bs, "pack"),
        "unpack": (bs, "unpack"),
    }
    return count_calls(monkeypatch, targets)


@pytest.mark.parametrize("shape, tile", [((40, 48), 1024), ((70, 90), 64)])
def test_one_image_api_checks_loads_and_packs_once(photo_like, counted, shape, tile):
    """A one-tile and a tiled image: one check, one load, one pack, no parse."""
    data = codec.encode(photo_like(*shape), 3, tile=tile)
    assert counted == {"check": 1, "load": 1, "pack": 1, "unpack": 0}
    f = bs.unpack(data)
    assert (f.height, f.width, f.quality, f.tile_count()) == (*shape, 3, 1 if tile == 1024 else 4)


def test_batch_api_checks_and_loads_once_and_packs_each_file_once(photo_like, counted):
    """Two same-size images share a network pass, a third is alone: one check and one load for the call."""
    images = [photo_like(40, 48, seed=1), photo_like(40, 48, seed=2), photo_like(30, 100)]
    datas = batch.encode_images(images, 4, batch=4)
    assert counted == {"check": 1, "load": 1, "pack": len(images), "unpack": 0}
    assert [bs.unpack(d).width for d in datas] == [48, 48, 100]


def test_command_checks_loads_and_packs_once_and_reports_what_it_wrote(photo_like, counted, tmp_path):
    """``-v``'s size and quality are the encoder's, and they are the written files'."""
    pngs = []
    for i, (h, w) in enumerate([(40, 48), (40, 48), (33, 70)]):
        pngs.append(tmp_path / f"{i}.png")
        Image.fromarray(photo_like(h, w, seed=i)).save(pngs[-1])
    result = run("encode", *pngs, "-q", "5", "-o", f"{tmp_path}/out/", "-v", "--batch", "2")
    assert result.exit_code == 0, result.stderr
    assert counted == {"check": 1, "load": 1, "pack": len(pngs), "unpack": 0}
    said = re.findall(r"(\d+)\.png -> .*: (\d+)x(\d+), (\d+) bytes, [\d.]+ bpp, quality ([\d.]+)", result.stderr)
    assert len(said) == len(pngs), result.stderr
    for name, w, h, size, quality in said:
        data = (tmp_path / "out" / f"{name}.aec").read_bytes()
        f = bs.unpack(data)
        assert (f.width, f.height, len(data), f.quality) == (int(w), int(h), int(size), float(quality))


def test_a_batch_of_one_is_the_one_image_api(photo_like):
    """The same bytes through each entry: one path."""
    rgb = photo_like(40, 48)
    data = codec.encode(rgb, 4)
    assert batch.encode_arrays([rgb], 4) == [data]
    assert np.array_equal(np.asarray(codec.decode(data)), np.asarray(codec.decode(batch.encode_images([rgb], 4)[0])))
