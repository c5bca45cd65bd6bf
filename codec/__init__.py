"""aecodec: a learned image codec (GDN autoencoder + CompressAI hyperprior and rANS).

    >>> import codec
    >>> data = codec.encode(Image.open("photo.png"), quality=4)
    >>> image = codec.decode(data)

Importing the package registers the Pillow plugin for ``.aec`` files.
"""

import warnings

# compressai 1.2.8 calls torch.jit.script at import time, which torch 2.14 flags as deprecated.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

from .api import decode, encode  # noqa: E402
from .errors import AecError, FormatError  # noqa: E402
from .plugin import register as _register_plugin  # noqa: E402

__version__ = "0.1.0"
__all__ = ["encode", "decode", "AecError", "FormatError", "__version__"]

_register_plugin()
