"""The one exception type hvqcodec raises for bad input."""


class HvqError(ValueError):
    """Bad input: an unreadable image, an empty or corrupt .hvq file, a file written by another
    model or format version, a missing or damaged weights file. The message says which."""
