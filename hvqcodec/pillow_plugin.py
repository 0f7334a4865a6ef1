"""Pillow plugin: `Image.open("x.hvq")` and `im.save("y.hvq", quality=Q)` after `import hvqcodec`.

Follows Pillow's "Writing your own image plugin" guide: an `ImageFile.ImageFile` subclass that
parses the header on open, a Python decoder that runs the codec when the pixels are loaded,
and a save handler.
"""

from PIL import Image, ImageFile

from hvqcodec import container
from hvqcodec.codec import default_codec, metadata_info

FORMAT = "HVQ"


def _accept(prefix: bytes) -> bool:
    return prefix[:3] == container.MAGIC


class HvqImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "hvqcodec learned image"

    def _open(self) -> None:
        # The magic matched in _accept, so a bad file is ours to describe: HvqError propagates.
        header = container.unpack(self.fp.read())
        self._size = (header.width, header.height)
        self._mode = "RGB"
        self.info["hvq_model_id"] = header.model_id
        self.info["quality"] = header.quality
        self.info.update(metadata_info(header))
        # Nothing is decoded until load(): the tile hands the whole file to HvqDecoder.
        self.tile = [ImageFile._Tile(FORMAT, (0, 0, *self.size), 0, None)]


class HvqDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer: bytes) -> tuple[int, int]:
        assert self.fd is not None
        self.fd.seek(0)
        image = default_codec().decode(self.fd.read())
        self.set_as_raw(image.tobytes())
        return -1, 0


def _save(im: Image.Image, fp, filename) -> None:
    fp.write(default_codec().encode(im, quality=im.encoderinfo.get("quality")))


def register() -> None:
    Image.register_open(FORMAT, HvqImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".hvq")
    Image.register_mime(FORMAT, "image/x-hvq")
    Image.register_decoder(FORMAT, HvqDecoder)
