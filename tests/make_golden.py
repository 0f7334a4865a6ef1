"""Regenerate the golden file of the shipped model (only when a new model is shipped):

python -m tests.make_golden
"""

import hashlib
from pathlib import Path

from hvqcodec import Codec
from hvqcodec.models import DEFAULT_MODEL

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"


def main() -> None:
    codec = Codec(DEFAULT_MODEL)
    data = codec.encode(HERE / "images" / "dog.png")
    (GOLDEN / f"dog.{DEFAULT_MODEL}.hvq").write_bytes(data)
    digest = hashlib.sha256(codec.decode(data).tobytes()).hexdigest()
    (GOLDEN / f"dog.{DEFAULT_MODEL}.sha256").write_text(digest + "\n")
    print(f"{len(data)} bytes, decoded pixels sha256 {digest}")


if __name__ == "__main__":
    main()
