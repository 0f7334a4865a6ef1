"""Pillow plugin: `Image.open("x.hvq")` and `im.save("y.hvq", quality=Q)` after `import hvqcodec`.

`quality` is the 0-100 scale of Pillow's JPEG and WebP savers; `target_size`, `target_bpp` and
`target_psnr` pick it instead, `effort` (0-3, as the JPEG XL plugin's) refines, and
`background` composites transparency onto a colour and `exact` keeps the colour under fully
transparent pixels (as Pillow's WebP saver), as in `hvqcodec.encode`.

Follows Pillow's "Writing your own image plugin" guide and its own plugins: `Image.open` reads
the header alone (size, mode, model, quality) and, where the file is all there, the metadata
chunks after the streams, which it seeks to; `load()` runs the codec with the model the header
names; `verify()` checks the CRC. Under `ImageFile.LOAD_TRUNCATED_IMAGES` a truncated file
loads as the best image its complete streams give, its alpha opaque if its alpha plane is cut
off. Data that ends inside the header raises `TruncatedFile`, an OSError, which
`ImageFile.Parser` takes for "not enough data yet", so incremental parsing (Django's
`get_image_dimensions`) knows the size once the header has arrived and decodes the whole file
on `close()`.
"""

from PIL import Image, ImageFile

from hvqcodec import container
from hvqcodec.errors import HvqError, TruncatedFile

# Opening a file reads its header alone and needs no torch; the codec (and torch) load with the
# first load() or save().

FORMAT = "HVQ"


def _accept(prefix: bytes) -> bool:
    return prefix[:3] == container.MAGIC


class HvqImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "hvqcodec learned image"

    def _open(self) -> None:
        # The magic matched in _accept, so a bad header is ours to describe: HvqError propagates.
        header = container.read_header(self.fp)
        self._size = (header.width, header.height)
        self._mode = header.mode  # RGB, RGBA, L or LA: from the header's flags
        self.info["hvq_model_id"] = header.model_id
        self.info["quality"] = header.quality_value
        # Metadata sits after the streams: seek over them. A file still arriving has no
        # chunks yet; load() reopens nothing, so they are read again once it is complete.
        self.fp.seek(header.streams_end)
        tail = self.fp.read()
        try:
            chunks = container.read_chunks(tail[:-4]) if len(tail) >= 4 else {}
        except TruncatedFile:
            chunks = {}
        self.info.update(container.metadata_info(chunks))
        # Nothing is decoded until load(): the tile hands the whole file to HvqDecoder.
        self.tile = [ImageFile._Tile(FORMAT, (0, 0, *self.size), 0, None)]

    def load_read(self, read_bytes: int) -> bytes:
        # Its presence tells ImageFile.Parser to collect the whole file and decode on close(),
        # as the codec needs every stream; ImageFile.load never calls it for this decoder.
        return self.fp.read(read_bytes)

    def verify(self) -> None:
        """Check the whole file's structure and CRC32 without decoding; HvqError if damaged."""
        self.fp.seek(0)
        container.unpack(self.fp.read())
        super().verify()


class HvqDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer: bytes) -> tuple[int, int]:
        from hvqcodec.codec import resolve

        if self.fd is None:
            raise HvqError("the hvq decoder reads whole files")
        self.fd.seek(0)
        data = self.fd.read()
        codec = resolve(None, data)
        try:
            image = codec.decode(data)
        except HvqError:
            if not ImageFile.LOAD_TRUNCATED_IMAGES:
                raise
            image = _best_of_truncated(codec, data)
        self.set_as_raw(image.tobytes())
        return -1, 0


def _best_of_truncated(codec, data: bytes) -> Image.Image:
    """What a truncated file's complete streams give, as Pillow shows what arrived of a JPEG
    under `LOAD_TRUNCATED_IMAGES`: every stream (only the CRC or chunks are missing), or a
    prefix of them down to a preview; an HvqError if not even the preview's streams are
    whole, or if the file is all there (its chunks whole, and a CRC after them) and so damaged,
    not cut short."""
    tail = data[container.header_of(data).streams_end :]
    if len(tail) >= 4:
        try:
            container.read_chunks(tail[:-4])
        except TruncatedFile:
            pass  # cut inside its chunks
        else:
            raise HvqError("corrupt file: CRC32 mismatch in a whole file (damaged, not truncated)")
    complete = container.complete_streams(data)
    if complete < container.PREVIEW_STREAMS:
        raise HvqError(
            f"truncated file: {complete} whole streams, a preview needs {container.PREVIEW_STREAMS}"
        )
    return codec.decode_detailed(data, streams=complete).image


def _save(im: Image.Image, fp, filename) -> None:
    from hvqcodec.codec import resolve

    options = im.encoderinfo
    targets = {k: options.get(k) for k in ("target_size", "target_bpp", "target_psnr")}
    strict = bool(options.get("strict"))
    effort = options.get("effort", 0)
    fp.write(resolve(None).encode(im, options.get("quality"), strict=strict, effort=effort,
                                  background=options.get("background"),
                                  exact=bool(options.get("exact")), **targets))  # fmt: skip


def register() -> None:
    Image.register_open(FORMAT, HvqImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".hvq")
    Image.register_mime(FORMAT, "image/x-hvq")
    Image.register_decoder(FORMAT, HvqDecoder)
