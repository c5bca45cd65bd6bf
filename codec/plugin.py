"""Pillow plugin: ``Image.open("x.aec")`` and ``im.save("x.aec", quality=80)`` once ``codec`` is imported.

``save`` takes Pillow's keywords: ``quality`` on Pillow's 0-100 scale (as for JPEG and WebP), mapped linearly
onto the default model's range (0 → 1, 100 → its top level L: ``pillow_quality``); ``aec_quality`` in our own
1-L scale; or ``target_bpp`` / ``max_bytes``, which search the quality as ``codec.encode`` does; ``effort``
(0-3), ``model`` (an id of ``aecodec models``) and ``iterations`` (``model="overfit"``) as ``codec.encode``'s.
"""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from .core.errors import AecError
from .core.quality import Q_MIN
from .format import bitstream as bs
from .weights.manifest import installed_qualities

FORMAT = "AEC"


def _accept(prefix: bytes) -> bool:
    return prefix[: len(bs.MAGIC)] == bs.MAGIC


class AecImageFile(ImageFile.ImageFile):
    """Reads the header on open; decodes the whole image on ``load()`` (tiled as the file says).

    Keeps Pillow's contract for plugins: a file that is not a valid ``.aec`` raises SyntaxError in ``_open``
    (so ``Image.open`` tries the other plugins, then raises UnidentifiedImageError), a failure while
    decoding is an OSError, and the size is left to Pillow's own ``MAX_IMAGE_PIXELS`` check (a
    DecompressionBombWarning above it, DecompressionBombError above twice it), not to ours.
    """

    format = FORMAT
    format_description = "aecodec learned image codec"

    def _open(self) -> None:
        self._data = self.fp.read()
        try:
            header = bs.unpack(self._data, max_pixels=bs.NO_LIMIT)  # Image.open checks the size after us
        except AecError as e:
            raise SyntaxError(f"not a valid .aec file: {e}") from None
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

            try:
                decoded = decode(self._data, max_pixels=_work_limit())
            except AecError as e:
                raise OSError(f"cannot decode .aec file: {e}") from None
            self._data = None
            self.im = decoded.im
            self._release_file()
        return Image.Image.load(self)

    def _release_file(self) -> None:
        """Close the file Pillow opened for us once its bytes are decoded, as ``ImageFile.load`` does for the
        formats it decodes itself (this ``load`` replaces that one): else each loaded image keeps a descriptor."""
        if getattr(self, "_exclusive_fp", False) and self._close_exclusive_fp_after_loading and self.fp:
            self.fp.close()
        self.fp = None


def _work_limit() -> int:
    """The padded working area ``load`` allows: ours (``bs.MAX_PIXELS``) unless Pillow's own limit is
    raised above it, or lifted (``Image.MAX_IMAGE_PIXELS = None``), as Pillow's users expect."""
    limit = Image.MAX_IMAGE_PIXELS
    return bs.NO_LIMIT if limit is None else max(bs.MAX_PIXELS, 2 * limit)


PILLOW_QUALITY_MAX = 100


def pillow_quality(quality: float, levels: int, only: tuple[float, ...] | None = None) -> float:
    """Pillow's 0-100 ``quality`` on the scale of a model with ``levels`` levels, linearly: 0 → Q_MIN, 100 →
    its top (as 100 is JPEG's best). With 10 levels JPEG's default 75 → 7.75; with 12 it → 9.25 (the λ
    ladder is shared, so a Pillow value means more bits on a model with a longer ladder). A model with one
    network per quality (``only``) gets the nearest of its qualities on the same line from its lowest to its top."""
    if not 0 <= quality <= PILLOW_QUALITY_MAX:
        raise ValueError(f"quality must be between 0 and {PILLOW_QUALITY_MAX} (Pillow's scale), got {quality!r}")
    if only:
        return sorted(only)[round((len(only) - 1) * quality / PILLOW_QUALITY_MAX)]
    return Q_MIN + (levels - Q_MIN) * quality / PILLOW_QUALITY_MAX


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from .api import encode

    opts = im.encoderinfo
    given = [k for k in ("quality", "aec_quality", "target_bpp", "max_bytes") if opts.get(k) is not None]
    if len(given) > 1:
        raise AecError(f"give one of quality, aec_quality, target_bpp or max_bytes, not {' and '.join(given)}")
    quality = None  # the model's default (``api.encode``)
    if "quality" in given:
        _, levels, only = installed_qualities(opts.get("model"))  # the model encode() uses
        quality = pillow_quality(opts["quality"], levels, only)
    elif "aec_quality" in given:
        quality = opts["aec_quality"]
    fp.write(
        encode(
            im,
            quality,
            target_bpp=opts.get("target_bpp"),
            max_bytes=opts.get("max_bytes"),
            effort=opts.get("effort", 0),
            iterations=opts.get("iterations"),
            model=opts.get("model"),
        )
    )


def register() -> None:
    Image.register_open(FORMAT, AecImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".aec")
    Image.register_mime(FORMAT, "image/x-aec")
