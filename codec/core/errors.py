"""The codec's own error: anything a user can cause (bad input, bad file, missing weights)."""

#: Exit statuses of a command: an AecError is the input's fault, anything else an internal error.
EXIT_BAD_INPUT, EXIT_OTHER = 2, 1
#: Exit status of an interrupted command (128 + SIGINT): ``codec.cli`` and the entry point ``_aecodec_start``.
EXIT_INTERRUPTED = 130


class AecError(Exception):
    """A user-facing failure, reported as one line; the CLI exits with code 2."""


class FormatError(AecError):
    """The bytes are not a valid ``.aec`` file (bad magic, version, CRC, truncation, limits)."""
