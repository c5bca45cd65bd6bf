"""The model interface and the kind registry: what engine, tiling, batch and the API rely on."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import codec
from codec.core.errors import AecError
from codec.core.tensors import to_tensor
from codec.models import DEFAULT_KIND, KINDS, kind_of, model_class
from codec.models.base import Effortful, Kind, Model, Trainable, register
from codec.models.hyperprior import GainHyperprior
from codec.weights.store import _load, load_codec, read_manifest, weights_dir


def test_registry_maps_kinds_and_defaults_old_entries():
    assert model_class("gain-msh") is GainHyperprior and KINDS[DEFAULT_KIND] is GainHyperprior
    assert kind_of({"file": "x"}) == DEFAULT_KIND  # entries written before kinds existed
    with pytest.raises(AecError, match="unknown model kind 'elic'"):
        model_class("elic")


def test_each_kind_implements_only_its_parts():
    """The shipped networks code, train and optimize latents; the imported and fitted kinds only code (no stubs of
    training); a class that neither codes nor trains is not a kind."""
    parts = {k: {p.__name__ for p in (Model, Trainable, Effortful) if issubclass(KINDS[k], p)} for k in KINDS}
    everything = {"Model", "Trainable", "Effortful"}
    assert {k: parts[k] for k in ("gain-msh", "gain-ctx", "compressai", "compressai-vbr", "overfit")} == {
        "gain-msh": everything,
        "gain-ctx": everything,
        "compressai": {"Model"},
        "compressai-vbr": {"Model"},
        "overfit": {"Model"},
    }
    with pytest.raises(TypeError, match="neither codes"):
        register(type("Nothing", (Kind,), {"kind": "nothing"}))
    with pytest.raises(ValueError, match="registered twice"):
        register(type("Again", (GainHyperprior,), {}))
    assert "nothing" not in KINDS


def test_export_writes_the_kind():
    from tests.support import TEST_MODEL_ID

    entry = read_manifest()["models"][TEST_MODEL_ID]
    assert entry["kind"] == "gain-msh"


def test_unknown_kind_in_manifest_is_a_clear_error(tmp_path, monkeypatch):
    folder = tmp_path / "w"
    shutil.copytree(weights_dir(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    model_id = manifest["default"]
    manifest["models"][model_id]["kind"] = "no-such-kind"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("AECODEC_WEIGHTS", str(folder))
    _load.cache_clear()
    try:
        with pytest.raises(AecError, match="unknown model kind 'no-such-kind'"):
            load_codec(model_id)
    finally:
        _load.cache_clear()


def test_encode_latent_decode_latent_round_trip(photo_like):
    """Per image an ordered list of byte streams; decoding them with the latent size gives the quantized latent."""
    model = load_codec().model
    x = torch.cat([to_tensor(photo_like(64, 128, seed=s), model.stride) for s in range(2)])
    y = model.analyze(x)
    assert y.shape[2:] == (64 // model.latent_stride, 128 // model.latent_stride)
    streams = model.encode_latent(y, 3.5)
    assert len(streams) == 2 and all(isinstance(s, bytes) for image in streams for s in image)
    y_hat = model.decode_latent(streams, tuple(y.shape[2:]), 3.5)
    assert torch.equal(y_hat, model.quantize(y, 3.5).y_hat().float())
    assert model.synthesize(y_hat).shape == x.shape
    with pytest.raises(ValueError):
        model.decode_latent([streams[0][:1]], tuple(y.shape[2:]), 3.5)  # a stream missing


def test_side_hook_replaces_the_hyper_analysis(photo_like):
    """``side``: the encoder may choose the hyper-latent; the default is ``side_analysis(y)``."""
    model = load_codec().model
    y = model.analyze(to_tensor(photo_like(64, 64), model.stride))
    with torch.inference_mode():
        z = model.side_analysis(y)
    assert model.encode_latent(y, 5.0, side=z) == model.encode_latent(y, 5.0)
    (moved,) = model.encode_latent(y, 5.0, side=z + 3.0)
    assert moved[0] != model.encode_latent(y, 5.0)[0][0]
    # whatever side was coded, the decoder rebuilds the latent the encoder quantized against it
    want = model.quantize(y, 5.0, side=z + 3.0).y_hat().float()
    assert torch.equal(model.decode_latent([moved], tuple(y.shape[2:]), 5.0), want)


def test_a_model_with_another_stride_tiles_and_pads_by_its_own(photo_like, monkeypatch):
    """Nothing outside the model assumes 64: a stride-128 variant pads, tiles and decodes by 128."""
    c = load_codec()
    monkeypatch.setattr(type(c.model), "stride", 128)
    data = codec.encode(photo_like(70, 130), quality=4, codec=c, tile=128)
    f = codec.format.bitstream.unpack(data)
    assert f.tile_count() == 2 and codec.decode(data, codec=c).size == (130, 70)
    with pytest.raises(AecError, match="multiple of 128"):
        codec.encode(photo_like(70, 130), codec=c, tile=64)
