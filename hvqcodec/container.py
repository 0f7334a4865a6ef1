"""The .hvq container: header, per-level streams, optional chunks and CRC32.

Specified in docs/FORMAT.md.
"""

import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from hvqcodec.errors import HvqError, TruncatedFile

_MAX_VARINT_BYTES = 5  # enough for any 32-bit value
MAGIC = b"HVQ"
# Version 2 widened the quality field to the 0-100 scale in hundredths; version 1 files
# (hvqcodec 0.1 and 0.2: one byte, a model's own 1..N quality) still read. Version 3 adds a
# feature flags byte; a file without flags is written as version 2, which older hvqcodec reads.
VERSION = 2
FLAGS_VERSION = 3  # the first version with the flags byte
QUALITY_SCALE = 100  # quality is stored as round(quality * 100), 0..10000
# The quality field's largest value, per version.
MAX_QUALITY = {1: 255, 2: 100 * QUALITY_SCALE, 3: 100 * QUALITY_SCALE}
VERSIONS = tuple(MAX_QUALITY)  # the versions this module reads and writes
# Feature flags: what the decoder outputs besides RGB. Other bits are reserved.
FLAG_GRAY = 1  # the image is grayscale: decode to L (LA)
FLAG_ALPHA = 2  # the file has an alpha plane, in an ALPHA_CHUNK: decode to RGBA (LA)
KNOWN_FLAGS = FLAG_GRAY | FLAG_ALPHA
# Metadata chunks, by the key Pillow uses for them in `Image.info`.
METADATA_CHUNKS = {"icc_profile": b"ICCP", "exif": b"EXIF", "xmp": b"XMP "}
ALPHA_CHUNK = b"ALPH"  # the alpha plane as a PNG or lossless WebP file (`hvqcodec.alpha`)
# Where Pillow's PNG reader and writer keep an XMP packet: an iTXt chunk of this keyword.
PNG_XMP_KEY = "XML:com.adobe.xmp"
# Every file's first two streams decode alone (a preview), whatever its model.
PREVIEW_STREAMS = 2


class _Fields:
    """The quality field read through its version, and the feature flags: `quality`, `version`
    and `flags` attributes."""

    quality: int
    version: int
    flags: int

    @property
    def quality_value(self) -> float:
        """On the 0-100 scale; a version 1 file's is its model's own 1..N."""
        return self.quality if self.version == 1 else self.quality / QUALITY_SCALE

    @property
    def quality_label(self) -> str:
        """As a user reads it."""
        if self.version == 1:
            return f"{self.quality} (of the model's own 1..N scale, before 0-100)"
        return f"{self.quality_value:g}"

    @property
    def gray(self) -> bool:
        return bool(self.flags & FLAG_GRAY)

    @property
    def has_alpha(self) -> bool:
        return bool(self.flags & FLAG_ALPHA)

    @property
    def mode(self) -> str:
        """The Pillow mode the file decodes to: RGB, RGBA, L or LA."""
        return ("L" if self.gray else "RGB") + ("A" if self.has_alpha else "")


@dataclass
class HvqFile(_Fields):
    width: int
    height: int
    model_id: int
    quality: int  # as stored: hundredths of the 0-100 scale (version 1: the model's 1..N)
    streams: list[bytes]  # one per level, coarsest first
    # Optional chunks after the streams, by 4-byte ASCII type (e.g. b"ICCP", b"EXIF").
    # A reader keeps the types it knows and skips the rest.
    chunks: dict[bytes, bytes] = field(default_factory=dict)
    version: int = VERSION
    flags: int = 0  # FLAG_GRAY | FLAG_ALPHA; version 3 only


def version_for(flags: int) -> int:
    """The version a writer gives a file: 2 without feature flags, so that an RGB file is
    byte for byte what hvqcodec wrote before version 3, and older readers read it; else 3."""
    return FLAGS_VERSION if flags else VERSION


def _varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant first, high bit = more follows."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise TruncatedFile(f"truncated file: ends inside the {what}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self, what: str) -> int:
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        raise HvqError(f"corrupt header: {what} is too long")


def pack(f: HvqFile) -> bytes:
    if f.width < 1 or f.height < 1:
        raise HvqError(f"cannot store an image of {f.width}x{f.height}")
    if f.version not in VERSIONS:
        raise HvqError(f"cannot write .hvq format version {f.version}")
    if not isinstance(f.quality, int) or not 0 <= f.quality <= MAX_QUALITY[f.version]:
        raise HvqError(f"quality field {f.quality} out of range")
    if not 0 <= f.flags <= 255 or (f.flags and f.version < FLAGS_VERSION):
        raise HvqError(f"feature flags {f.flags} need format version 3 and fit in a byte")
    if len(f.streams) > 255:
        raise HvqError("the stream count must fit in a byte")
    if any(len(kind) != 4 for kind in f.chunks):
        raise HvqError("chunk types are 4 bytes")
    body = b"".join(
        [
            MAGIC,
            bytes([f.version]),
            f.model_id.to_bytes(4, "big"),
            _varint(f.width),
            _varint(f.height),
            f.quality.to_bytes(1 if f.version == 1 else 2, "big"),
            bytes([f.flags]) if f.version >= FLAGS_VERSION else b"",
            bytes([len(f.streams)]),
            *[_varint(len(s)) for s in f.streams],
            *f.streams,
            *[kind + _varint(len(data)) + data for kind, data in f.chunks.items()],
        ]
    )
    return body + zlib.crc32(body).to_bytes(4, "big")


@dataclass
class Header(_Fields):
    """The fixed fields of a file and where its parts lie: all that is known before the
    streams are read."""

    width: int
    height: int
    model_id: int
    quality: int
    stream_lengths: list[int]
    size: int  # bytes of the header, stream lengths included: the first stream starts here
    version: int = VERSION
    flags: int = 0

    @property
    def streams_end(self) -> int:
        return self.size + sum(self.stream_lengths)


def _header(r: _Reader) -> Header:
    """The header, from a reader at the start of the file."""
    try:
        start = r.take(4, "magic and version")
    except TruncatedFile:
        _check_start(r.data)  # a prefix that is not ours says so, rather than "truncated"
        raise
    version = _check_start(start)
    model_id = int.from_bytes(r.take(4, "model id"), "big")
    width, height = r.varint("width"), r.varint("height")
    if width < 1 or height < 1:
        raise HvqError(f"corrupt header: image size {width}x{height}")
    quality = int.from_bytes(r.take(1 if version == 1 else 2, "quality"), "big")
    if quality > MAX_QUALITY[version]:
        raise HvqError(f"corrupt header: quality field {quality} is past 10000 (100.00)")
    flags = r.take(1, "feature flags")[0] if version >= FLAGS_VERSION else 0
    if flags & ~KNOWN_FLAGS:
        raise HvqError(
            f"unsupported feature flags {flags:#04x} (this hvqcodec knows {KNOWN_FLAGS:#04x}): "
            "the file needs a newer hvqcodec"
        )
    levels = r.take(1, "stream count")[0]
    lengths = [r.varint("stream length") for _ in range(levels)]
    return Header(width, height, model_id, quality, lengths, r.pos, version, flags)


def header_of(data: bytes) -> Header:
    """The header of a file or of any prefix that holds it; the CRC is not checked."""
    return _header(_Reader(data))


def _check_start(data: bytes) -> int:
    """The version, once the magic and the version of a file's start are checked."""
    if not data:
        raise HvqError("empty file")
    if data[:3] != MAGIC:
        if len(data) < 3 and MAGIC.startswith(data):
            raise TruncatedFile("truncated file: ends inside the magic bytes")
        raise HvqError("not an .hvq file (bad magic bytes)")
    version = _Reader(data[3:]).take(1, "version")[0]
    if version not in VERSIONS:
        raise HvqError(
            f"unsupported .hvq format version {version} (this hvqcodec reads 1 to {VERSIONS[-1]})"
        )
    return version


def unpack(data: bytes, streams: int | None = None) -> HvqFile:
    """Parse and check a .hvq file; every malformation raises HvqError.

    `streams`: parse only the header and the first `streams` streams (a preview). `data` may
    then be any prefix of the file that holds them, so the CRC, which covers the whole file, is
    not checked; of the chunks after the last stream it keeps those the prefix holds whole.
    """
    body = data
    if streams is None:
        _check_start(data)
        if len(data) < 4 + 4 + 4:
            raise TruncatedFile("truncated file: shorter than the smallest header")
        body, crc = data[:-4], int.from_bytes(data[-4:], "big")
        if zlib.crc32(body) != crc:
            raise HvqError("corrupt file: CRC32 mismatch (the file is damaged or truncated)")
    r = _Reader(body)
    h = _header(r)
    lengths = h.stream_lengths
    if streams is not None:
        if len(lengths) < streams:
            raise HvqError(f"corrupt header: {len(lengths)} streams, a preview needs {streams}")
        lengths = lengths[:streams]
    elif h.streams_end > len(body):
        raise HvqError(
            f"corrupt file: streams take {sum(lengths)} bytes but {len(body) - r.pos} remain"
        )
    payload = [r.take(n, "streams") for n in lengths]
    if streams is None:
        chunks = read_chunks(body[r.pos :])
        if h.flags & FLAG_ALPHA and ALPHA_CHUNK not in chunks:
            raise HvqError("corrupt file: the header announces an alpha plane, but no ALPH chunk")
    else:
        chunks = read_chunks(body[h.streams_end :], whole_only=True)
    return HvqFile(h.width, h.height, h.model_id, h.quality, payload, chunks, h.version, h.flags)


def read_chunks(data: bytes, whole_only: bool = False) -> dict[bytes, bytes]:
    """The chunks of the bytes between the last stream and the CRC. `whole_only`: `data` is a
    prefix of those bytes, the CRC perhaps among them (or not even the last stream's end: then
    there are none); keep the chunks before the first that is cut short or malformed."""
    r, chunks = _Reader(data), {}
    while r.pos < len(data):
        try:
            kind = r.take(4, "chunk type")
            chunks[kind] = r.take(r.varint("chunk length"), f"{kind!r} chunk")
        except HvqError:
            if not whole_only:
                raise
            break
    return chunks


class _FileReader(_Reader):
    """A `_Reader` that reads an open file only as far as it is asked to."""

    def __init__(self, fp: BinaryIO) -> None:
        super().__init__(b"")
        self.fp = fp

    def take(self, n: int, what: str) -> bytes:
        self.data += self.fp.read(self.pos + n - len(self.data))
        return super().take(n, what)


def read_prefix(fp: BinaryIO, streams: int) -> bytes:
    """The bytes of an open .hvq file up to the end of its first `streams` streams, and no
    further: all a preview reads."""
    r = _FileReader(fp)
    lengths = _header(r).stream_lengths
    r.take(sum(lengths[:streams]), "streams")
    return r.data


def read_header(fp: BinaryIO) -> Header:
    """The header of an open .hvq file, reading no further than its end."""
    return _header(_FileReader(fp))


def metadata_info(chunks: dict[bytes, bytes]) -> dict[str, bytes]:
    """A file's metadata chunks as Pillow `Image.info` entries."""
    return {k: chunks[c] for k, c in METADATA_CHUNKS.items() if c in chunks}


def complete_streams(data: bytes) -> int:
    """How many streams a prefix of a file holds whole (TruncatedFile if not its header)."""
    header = header_of(data)
    end, count = header.size, 0
    for length in header.stream_lengths:
        end += length
        if end > len(data):
            break
        count += 1
    return count
