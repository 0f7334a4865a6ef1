"""The one exception type hvqcodec raises for bad input."""


class HvqError(ValueError):
    """Bad input: an unreadable image, an empty or corrupt .hvq file, a file written by another
    model or format version, a missing or damaged weights file. The message says which."""


class TruncatedFile(HvqError, OSError):
    """A .hvq file that ends early. Also an OSError, which Pillow's `ImageFile.Parser` takes
    for "not enough data yet" while a file arrives in pieces."""
