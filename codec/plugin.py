"""Pillow plugin: ``Image.open("x.aec")`` and ``im.save("x.aec", quality=4.5)`` once ``codec`` is imported."""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from . import bitstream as bs
from .quality import DEFAULT_QUALITY

FORMAT = "AEC"


def _accept(prefix: bytes) -> bool:
    return prefix[: len(bs.MAGIC)] == bs.MAGIC


class AecImageFile(ImageFile.ImageFile):
    """Reads the header on open; decodes the whole image on ``load()`` (the network is not tiled)."""

    format = FORMAT
    format_description = "aecodec learned image codec"

    def _open(self) -> None:
        self._data = self.fp.read()
        header = bs.unpack(self._data)
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info["quality"] = header.quality
        self.info["model"] = header.model_id
        if header.icc:
            self.info["icc_profile"] = header.icc
        if header.exif:
            self.info["exif"] = header.exif
        self.tile = []

    def load(self):
        if self._data is not None:
            from .api import decode

            decoded = decode(self._data)
            self._data = None
            self.im = decoded.im
        return Image.Image.load(self)


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from .api import encode

    quality = im.encoderinfo.get("quality", DEFAULT_QUALITY)
    fp.write(encode(im, quality=quality))


def register() -> None:
    Image.register_open(FORMAT, AecImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".aec")
    Image.register_mime(FORMAT, "image/x-aec")
