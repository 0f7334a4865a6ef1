"""Header-only work never imports torch: `import hvqcodec`, `Image.open(...).size` and `.info`,
`hvqcodec info`, `hvqcodec models` and `--help`. The first encode or decode imports it."""

import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "dog.hvq-v3.1.hvq"

SCRIPT = """
import sys
import hvqcodec
from PIL import Image
from hvqcodec.cli import main

im = Image.open(sys.argv[1])
assert im.size == (160, 272) and "quality" in im.info
for args in (["info", sys.argv[1]], ["models"], ["--help"], ["compress", "--help"]):
    main(args, standalone_mode=False)
print("before decoding:", "torch" in sys.modules)
im.load()
print("after decoding:", "torch" in sys.modules)
"""


def test_header_only_work_never_imports_torch():
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(GOLDEN)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert "before decoding: False" in out and "after decoding: True" in out, out
    assert "hvq-v3.1 (0da3e743)" in out  # info named the model without loading it
