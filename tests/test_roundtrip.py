"""Round trips, code exactness and rate against cross-entropy."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hvqcodec
from hvqcodec import HvqError


@pytest.mark.parametrize("height,width", [(1, 1), (17, 33), (257, 100), (32, 32)])
def test_awkward_sizes_roundtrip_exact_codes(tiny_codec, dog, height, width):
    crop = np.ascontiguousarray(dog[:height, :width])
    enc = tiny_codec.encode_detailed(crop)
    dec = tiny_codec.decode_detailed(enc.data)
    assert dec.image.size == (width, height)
    assert dec.image.mode == "RGB"
    for level in enc.codes:
        np.testing.assert_array_equal(enc.codes[level], dec.codes[level])


ENCODE = """
import sys, numpy as np, torch
from PIL import Image
from hvqcodec import Codec
torch.set_num_threads(1)
rgb = np.asarray(Image.open(sys.argv[2]).convert("RGB"))
sys.stdout.buffer.write(Codec(sys.argv[1]).encode(rgb, float(sys.argv[3])))
"""


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hvq-v2", "hvq-v3.1"])
def test_a_fresh_process_on_one_thread_writes_the_same_bytes(model, dog):
    """Encoding depends on nothing but the input, the model and the settings: not on the
    thread count, nor on what the process ran before (here: another quality first)."""
    from hvqcodec.codec import shipped_codec

    path = Path(__file__).parent / "images" / "dog.png"
    shipped_codec(model).encode(dog, 90)
    here = shipped_codec(model).encode(dog, 40)
    args = [sys.executable, "-c", ENCODE, model, str(path), "40"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    there = subprocess.run(args, capture_output=True, check=True, env=env).stdout
    assert there == here


def test_shipped_model_codes_exact_and_rate_near_cross_entropy(shipped_codec, dog):
    enc = shipped_codec.encode_detailed(dog)
    dec = shipped_codec.decode_detailed(enc.data)
    for level in enc.codes:
        np.testing.assert_array_equal(enc.codes[level], dec.codes[level])
    bits = sum(s.bits for s in enc.stats.values())
    ideal = sum(s.ideal_bits for s in enc.stats.values())
    # Within 1% of the model's cross-entropy, plus at most one 32-bit flush word per stream.
    assert bits <= 1.01 * ideal + 32 * len(enc.stats)
    assert ideal > 0
    # The decoder sees the same probabilities, so it reports the same costs.
    for level in enc.stats:
        assert dec.stats[level] == enc.stats[level]


# hvq-v2 on dog.png at each knot of its scale: (file bytes, PSNR in dB), measured when the
# model shipped (then qualities 1, 3, 4, 5, 6 of its 1..6 scale, a byte smaller: the quality
# field was one byte). Sizes are exact (integer-exact priors); the PSNR may move in its last
# digits on another CPU (float decoder), never by a tenth of a dB.
SHIPPED_DOG = {0: (223, 19.8394), 50: (677, 23.3392), 75: (1319, 24.8179),
               90: (1969, 25.2652), 100: (2611, 25.3932)}  # fmt: skip


@pytest.mark.slow
def test_shipped_model_reconstructs_the_image_as_when_it_shipped(dog):
    from hvqcodec.codec import shipped_codec
    from hvqcodec.metrics import psnr

    codec = shipped_codec("hvq-v2")
    for q, (size, expected) in SHIPPED_DOG.items():
        data = codec.encode(dog, q)
        assert len(data) == size
        assert psnr(dog, np.asarray(codec.decode(data))) == pytest.approx(expected, abs=0.02)


@pytest.mark.slow
def test_module_level_api_accepts_pil_array_and_path(dog, tmp_path):
    path = tmp_path / "dog.png"
    Image.fromarray(dog).save(path)
    a = hvqcodec.encode(dog)
    assert hvqcodec.encode(Image.fromarray(dog)) == a
    assert hvqcodec.encode(path) == a
    assert hvqcodec.encode(str(path)) == a
    assert hvqcodec.decode(a).size == (dog.shape[1], dog.shape[0])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 5), np.uint8),  # five bands: no mode
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
        12345,
    ],
)
def test_bad_image_inputs_raise_hvqerror(tiny_codec, bad):
    with pytest.raises(HvqError):
        tiny_codec.encode(bad)


def test_unsupported_quality_raises(tiny_codec, dog):
    with pytest.raises(HvqError, match="quality"):
        tiny_codec.encode(dog, quality=150)


def test_bad_input_raises_an_hvqerror_that_callers_can_catch_as_valueerror(tiny_codec):
    with pytest.raises(ValueError, match="bad magic") as e:
        tiny_codec.decode(b"GIF89a" + bytes(20))
    assert type(e.value) is HvqError


def test_codec_at_a_knot_picks_the_nearest_codes(tiny_codec, dog):
    import torch

    from hvqcodec.families.vqvae.model import PAD_STRIDE
    from hvqcodec.layers.tiling import pad_to_stride

    x = torch.tensor(dog).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        nearest = tiny_codec.model.vqvae.encode(pad_to_stride(x, PAD_STRIDE))
    enc = tiny_codec.encode_detailed(dog, 100)
    for level, codes in nearest.items():
        np.testing.assert_array_equal(enc.codes[level], codes[0].numpy())


def test_rate_distortion_choice_spends_fewer_bits_and_stays_exact(tiny_codec, dog):
    plain = tiny_codec.encode_detailed(dog, 100)  # the bottom stage's nearest codes
    frugal = tiny_codec.encode_detailed(dog, 20)  # its codes chosen with a rate weight
    dec = tiny_codec.decode_detailed(frugal.data)
    for level in frugal.codes:
        np.testing.assert_array_equal(frugal.codes[level], dec.codes[level])
    ideal = lambda e: sum(s.ideal_bits for s in e.stats.values())  # noqa: E731
    assert ideal(frugal) < ideal(plain)
