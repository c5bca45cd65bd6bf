"""Batched coding gives what the one-image path gives, in the caller's order."""

from __future__ import annotations

import numpy as np
import pytest

from codec.api import decode_array, encode_array
from codec.coding.batch import decode_arrays, encode_arrays
from codec.coding.decoding import groups, one_tile_size
from codec.core.tensors import psnr
from codec.format import bitstream as bs
from codec.weights.store import load_codec


@pytest.fixture
def images(photo_like):
    # Three of one padded size (64x128), one of another, one over the tile size (coded alone, tiled).
    return [
        photo_like(64, 96, seed=1),
        photo_like(40, 40, seed=2),
        photo_like(60, 128, seed=3),
        photo_like(64, 100, seed=4),
        photo_like(1100, 40, seed=5),
    ]


def test_groups_batch_same_padded_size_and_keep_big_images_alone():
    keys = [one_tile_size(h, w, 64) for h, w in [(64, 96), (40, 40), (60, 128), (64, 100), (1100, 40)]]
    chunks, alone = groups(keys, batch=2)
    assert sorted(map(sorted, chunks)) == [[0, 2], [1], [3]]
    assert alone == [4]


@pytest.mark.parametrize("batch", [1, 3])
def test_batched_encode_matches_one_by_one(images, batch):
    codec = load_codec()
    batched = encode_arrays(images, 5.5, codec, batch=batch)
    assert len(batched) == len(images)
    for rgb, data in zip(images, batched, strict=True):
        single = encode_array(rgb, 5.5, codec)
        f = bs.unpack(data)
        assert (f.width, f.height, f.quality) == (rgb.shape[1], rgb.shape[0], 5.5)
        assert abs(len(data) - len(single)) <= max(2, 0.02 * len(single))
        a, b = decode_array(data, codec), decode_array(single, codec)
        assert abs(psnr(rgb, a) - psnr(rgb, b)) < 0.05


def test_batched_decode_matches_one_by_one(images):
    codec = load_codec()
    datas = [encode_array(rgb, q, codec) for rgb, q in zip(images, (1, 3, 6.25, 10, 4), strict=True)]
    out = decode_arrays(datas, codec, batch=4)
    for data, rgb in zip(datas, out, strict=True):
        ref = decode_array(data, codec)
        assert rgb.shape == ref.shape
        assert np.abs(rgb.astype(int) - ref.astype(int)).max() <= 1


def test_batched_decode_refuses_damaged_files(images):
    codec = load_codec()
    good = encode_array(images[0], 4, codec)
    with pytest.raises(bs.FormatError):
        decode_arrays([good, good[:-9]], codec)


@pytest.mark.slow
def test_worker_processes_write_the_same_bytes(images):
    codec = load_codec()
    same_size = [images[0], images[2], images[3]]
    assert encode_arrays(same_size, 7, codec, batch=2, workers=2) == encode_arrays(same_size, 7, codec, batch=2)


def test_batched_images_keep_mode_alpha_and_profiles(photo_like):
    from PIL import Image

    from codec.api import decode, encode
    from codec.coding.batch import decode_images, encode_images

    codec = load_codec()
    rgba = Image.fromarray(photo_like(48, 64, seed=6)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((64, 48)))
    gray = Image.fromarray(photo_like(48, 64, seed=7)).convert("L")
    rgb = Image.fromarray(photo_like(48, 64, seed=8))
    rgb.info["icc_profile"] = b"not really a profile, carried as bytes"
    images = [rgba, gray, rgb]
    datas = encode_images(images, 6, codec, batch=3)
    decoded = decode_images(datas, codec, batch=3)
    for image, data, out in zip(images, datas, decoded, strict=True):
        ref = decode(encode(image, 6, codec=codec), codec=codec)
        assert out.mode == ref.mode == image.mode
        assert out.info.get("icc_profile") == image.info.get("icc_profile")
        if image.mode == "RGBA":
            assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(image.getchannel("A")))
        assert np.abs(np.asarray(out, dtype=int) - np.asarray(ref, dtype=int)).max() <= 1
        assert bs.unpack(data).quality == 6
