"""Exceptions raised by cgc."""


class FormatError(ValueError):
    """A .cgc or cgc.lossless byte string is malformed, truncated or corrupt."""
