"""Write the golden file of each shipped model that has none yet (run when a model is added):

python -m tests.make_golden

Existing golden files are never rewritten: they pin what old releases wrote.
"""

import hashlib
from pathlib import Path

from hvqcodec import Codec
from hvqcodec.models import SHIPPED

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name in SHIPPED:
        if (GOLDEN / f"dog.{name}.hvq").exists():
            continue
        codec = Codec(name)
        # The highest quality, so that the file holds every stream the model has.
        data = codec.encode(HERE / "images" / "dog.png", max(codec.qualities))
        (GOLDEN / f"dog.{name}.hvq").write_bytes(data)
        digest = hashlib.sha256(codec.decode(data).tobytes()).hexdigest()
        (GOLDEN / f"dog.{name}.sha256").write_text(digest + "\n")
        print(f"{name}: {len(data)} bytes, decoded pixels sha256 {digest}")


if __name__ == "__main__":
    main()
