"""Write the golden files of each shipped model that has none yet (run when a model is added):

python -m tests.make_golden

For each model: `dog.NAME.hvq`, the file it wrote; `dog.NAME.codes`, the SHA-256 of the code
maps it decodes to, which every machine must reproduce exactly (integer-exact priors); and
`dog.NAME.png`, the pixels it decoded to where it was written, which another CPU may
reproduce only up to float rounding in the synthesis. Existing golden files are never
rewritten: they pin what old releases wrote.
"""

import hashlib
from pathlib import Path

import numpy as np

from hvqcodec import Codec
from hvqcodec.shipped import SHIPPED

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"


def codes_digest(codes: dict[str, np.ndarray]) -> str:
    """SHA-256 over the code maps in stream order, as int64 little-endian."""
    h = hashlib.sha256()
    for name, c in codes.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(c, "<i8").tobytes())
    return h.hexdigest()


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name in SHIPPED:
        if (GOLDEN / f"dog.{name}.hvq").exists():
            continue
        codec = Codec(name)
        # The highest quality, so that the file holds every stream the model has.
        data = codec.encode(HERE / "images" / "dog.png", max(codec.qualities))
        (GOLDEN / f"dog.{name}.hvq").write_bytes(data)
        decoded = codec.decode_detailed(data)
        (GOLDEN / f"dog.{name}.codes").write_text(codes_digest(decoded.codes) + "\n")
        decoded.image.save(GOLDEN / f"dog.{name}.png")
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
