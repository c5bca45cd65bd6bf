"""Bytes and files in, bytes and files out: ``bitstream`` (the ``.aec`` container), ``stored`` (tiny images
stored as planes) and ``files`` (reading images, atomic writes). Imports only ``codec.core``."""
