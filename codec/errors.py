"""The codec's own error: anything a user can cause (bad input, bad file, missing weights)."""


class AecError(Exception):
    """A user-facing failure, reported as one line; the CLI exits with code 2."""


class FormatError(AecError):
    """The bytes are not a valid ``.aec`` file (bad magic, version, CRC, truncation, limits)."""
