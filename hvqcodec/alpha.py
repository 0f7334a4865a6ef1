"""Transparency: the alpha plane, stored losslessly in a file's ALPH chunk, and compositing onto
an opaque background for those who want no alpha.

The colour under the alpha is coded as any image's, except that under fully transparent pixels,
where it does not show, it becomes a smooth fill (`fill_hidden`) unless the user asks to keep
it. The alpha plane is not coded that way, because a lossy alpha shows: a halo around a cut-out,
a stair on a soft edge, noise in a flat area. Lossless, as WebP's and AVIF's. Its payload is a
complete standard image file of the plane rather than a coder of our own: alpha planes are flat
runs and smooth or binary edges, which lossless image coders already do well, and a second
implementation reads them with any image library. The encoder tries a greyscale PNG (1 bit deep
where only 0 and 255 occur, else 8) and a lossless WebP, and keeps the smallest; the magic tells
them apart, so there is no method byte. On the planes of `benchmarks/alpha.py` WebP is 5% to 42%
smaller than the 8-bit PNG at effort 0, in at most 0.6 s a plane, and libwebp's slow search at
effort 2 saves up to a further 25% in seconds (`benchmarks/results/alpha.json`); the PNG stays
for planes with a side over 16383 pixels, which WebP cannot hold. Torch-free: `hvqcodec info`
imports this module.
"""

import io

import numpy as np
from PIL import Image, ImageColor

from hvqcodec.container import ALPHA_CHUNK, HvqFile
from hvqcodec.errors import HvqError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A lossless WebP in the simple format: RIFF, its size, then WEBP and a VP8L chunk (RFC 9649).
WEBP_MAGIC, WEBP_LOSSLESS = b"RIFF", b"WEBPVP8L"
WEBP_MAX_SIDE = 16383  # the most pixels a WebP row or column holds
# libwebp's slowest lossless search (method 6) is up to a quarter smaller than method 4 on some
# planes and 10 to 60 times its time (seconds for a quarter megapixel): tried only at encoder
# effort 2 and above, as cwebp's -m 6 is a choice, and on planes up to this size.
METHOD_6_PIXELS = 1 << 20
METHOD_6_EFFORT = 2


def candidates(plane: np.ndarray, effort: int = 0) -> dict[str, bytes]:
    """Every coding the encoder tries for an (H, W) uint8 alpha plane, by name, at encoder
    `effort` (0-3)."""
    im = Image.fromarray(plane)
    out = {"png": _save(im, "PNG", optimize=True)}
    if np.isin(plane, (0, 255)).all():
        out["png-1bit"] = _save(Image.fromarray(plane == 255), "PNG", optimize=True)
    if max(plane.shape) <= WEBP_MAX_SIDE:
        # Pillow writes an L image as RGB, the plane in all three channels: the lossless
        # "subtract green" transform makes the copies in red and blue all but free.
        slow = effort >= METHOD_6_EFFORT and plane.size <= METHOD_6_PIXELS
        for method in (4, 6) if slow else (4,):
            out[f"webp-m{method}"] = _save(im, "WEBP", lossless=True, quality=100, method=method)
    return out


def encode(plane: np.ndarray, effort: int = 0) -> bytes:
    """The ALPH chunk's payload: the smallest candidate (the first of equals, a PNG)."""
    return min(candidates(plane, effort).values(), key=len)


def _save(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def coding(payload: bytes) -> str:
    """What the payload is, by its magic: "PNG" or "WebP"; HvqError if neither."""
    if payload.startswith(PNG_MAGIC):
        return "PNG"
    if payload[:4] == WEBP_MAGIC and payload[8:16] == WEBP_LOSSLESS:
        return "WebP"
    raise HvqError("corrupt file: the ALPH chunk is neither a PNG nor a lossless WebP")


def decode(payload: bytes, width: int, height: int) -> np.ndarray:
    """The (height, width) uint8 plane of an ALPH payload: a greyscale PNG's only channel, a
    lossless WebP's first (red); HvqError if it is another size or does not decode."""
    kind = coding(payload)
    try:
        with Image.open(io.BytesIO(payload), formats=[kind.upper()]) as im:
            if im.size != (width, height):  # before decoding: the size is in its header
                raise HvqError(
                    f"corrupt file: the ALPH chunk's {kind} is {im.width}x{im.height}, "
                    f"the image {width}x{height}"
                )
            if kind == "PNG" and im.mode not in ("1", "L"):
                raise HvqError(f"corrupt file: the ALPH chunk's PNG is {im.mode}, not greyscale")
            im.load()
            return np.asarray(im.convert("L") if kind == "PNG" else im.getchannel(0))
    except HvqError:
        raise
    except Exception as e:  # damaged data surfaces from Pillow's decoders in many types
        raise HvqError(f"corrupt file: the ALPH chunk's {kind} does not decode ({e})") from e


def plane_of(f: HvqFile) -> np.ndarray | None:
    """The alpha plane a decoder outputs for a file or a prefix of it: None for a file without
    the alpha flag (an ALPH chunk there is ignored), opaque where a prefix lacks the chunk."""
    if not f.has_alpha:
        return None
    payload = f.chunks.get(ALPHA_CHUNK)
    if payload is None:
        return np.full((f.height, f.width), 255, np.uint8)
    return decode(payload, f.width, f.height)


def background_colour(spec: str) -> tuple[int, int, int]:
    """A colour as Pillow names it ("white", "#rrggbb", "rgb(…)"); HvqError if it is none."""
    try:
        return ImageColor.getcolor(spec, "RGB")
    except (ValueError, TypeError, AttributeError):
        raise HvqError(
            f"unknown colour {spec!r}: give a colour name such as white, or #rrggbb"
        ) from None


def composite(colour: np.ndarray, alpha: np.ndarray, background: tuple[int, ...]) -> np.ndarray:
    """`colour` (H, W, C) uint8 over an opaque background of C values through `alpha` (H, W),
    rounded to the nearest level."""
    a = alpha[..., None].astype(np.uint32)
    back = np.asarray(background, np.uint32)
    return ((colour * a + back * (255 - a) + 127) // 255).astype(np.uint8)


def fill_hidden(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`colour` (H, W, 3) uint8 with its fully transparent pixels (alpha 0) replaced by a
    smooth fill from the visible ones, which codes in far fewer bits than whatever an editor
    left there; what shows is unchanged. cwebp and cjxl do the same unless asked to keep it
    (-exact, --keep_invisible). The fill is push-pull: the visible pixels averaged down a
    pyramid of halvings (Pillow premultiplies by the alpha when it reduces RGBA), then from the
    coarsest level up, each level laid over the one below it bilinearly enlarged, through its
    share of visible pixels."""
    if alpha.all():
        return colour
    if not alpha.any():  # nothing shows: the flattest image
        return np.full_like(colour, 128)
    image = Image.fromarray(colour)
    visible = Image.fromarray(alpha).point(lambda a: 255 if a else 0)
    level = image.copy()
    level.putalpha(visible)
    pyramid = [level]
    while max(pyramid[-1].size) > 1:
        pyramid.append(pyramid[-1].reduce(2))
    filled = pyramid[-1]  # one pixel, of some visible share: its colour is their mean
    for level in reversed(pyramid[1:-1]):
        filled = Image.alpha_composite(filled.resize(level.size, Image.BILINEAR), level)
        filled.putalpha(255)
    up = filled.convert("RGB").resize(image.size, Image.BILINEAR)
    return np.asarray(Image.composite(image, up, visible))


def flatten(image: Image.Image) -> Image.Image:
    """An RGBA or LA image composited onto white: RGB or L, its `info` kept."""
    planes = np.asarray(image)
    flat = composite(planes[..., :-1], planes[..., -1], (255,) * (planes.shape[2] - 1))
    out = Image.fromarray(flat[..., 0] if image.mode == "LA" else flat)
    out.info.update(image.info)
    return out
