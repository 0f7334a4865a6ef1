"""Every class of damaged file raises HvqError with a message naming the problem."""

import numpy as np
import pytest

from hvqcodec import HvqError
from hvqcodec.container import pack, unpack
from tests.fuzz_hvq import recrc


@pytest.fixture(scope="module")
def valid(tiny_codec, dog):
    return tiny_codec.encode(dog[:40, :40])


def test_empty(tiny_codec):
    with pytest.raises(HvqError, match="empty"):
        tiny_codec.decode(b"")


def test_wrong_magic(tiny_codec, valid):
    with pytest.raises(HvqError, match="magic"):
        tiny_codec.decode(b"PNG" + valid[3:])


def test_wrong_version(tiny_codec, valid):
    with pytest.raises(HvqError, match="version"):
        tiny_codec.decode(recrc(valid[:3] + bytes([9]) + valid[4:-4]))


@pytest.mark.parametrize("keep", [1, 2, 3, 4, 8, 12, -5, -1])
def test_truncated(tiny_codec, valid, keep):
    with pytest.raises(HvqError):
        tiny_codec.decode(valid[:keep])


def test_every_single_flipped_byte_is_caught(tiny_codec, valid):
    for i in range(len(valid)):
        damaged = bytearray(valid)
        damaged[i] ^= 0x40
        with pytest.raises(HvqError):
            tiny_codec.decode(bytes(damaged))


def test_wrong_model_id_names_the_model(tiny_codec, valid):
    f = unpack(valid)
    f.model_id ^= 0xFFFFFFFF
    with pytest.raises(HvqError, match=f"{f.model_id:08x}"):
        tiny_codec.decode(pack(f))


def test_file_from_another_model_is_refused(valid):
    from hvqcodec import Codec
    from tests.conftest import tiny_model

    other = Codec(tiny_model(seed=1, name="other"))
    with pytest.raises(HvqError, match="needs model"):
        other.decode(valid)


def test_stream_lengths_must_match_payload(tiny_codec, valid):
    f = unpack(valid)
    f.streams[0] = f.streams[0] + b"\x00"
    data = pack(f)
    # Length and payload agree again, so it parses; a trailing byte after the range coder's
    # last word is never read, so the codes, and the pixels, are those of the original.
    padded = tiny_codec.decode_detailed(data)
    original = tiny_codec.decode_detailed(valid)
    for name, codes in original.codes.items():
        np.testing.assert_array_equal(padded.codes[name], codes)
    assert padded.image.tobytes() == original.image.tobytes()
    body = data[:-4]
    with pytest.raises(HvqError):
        tiny_codec.decode(recrc(body[:-1]))


def test_huge_size_in_header_is_refused_before_decoding(tiny_codec, valid):
    f = unpack(valid)
    f.width, f.height = 1 << 20, 1 << 20
    with pytest.raises(HvqError, match="exceeds the limit"):
        tiny_codec.decode(pack(f))


def test_unknown_chunks_are_skipped(tiny_codec, valid):
    f = unpack(valid)
    f.chunks[b"ZZZZ"] = b"from the future"
    data = pack(f)
    assert unpack(data).chunks == {b"ZZZZ": b"from the future"}
    assert tiny_codec.decode(data).size == tiny_codec.decode(valid).size


def test_truncated_chunk_is_an_error(valid):
    f = unpack(valid)
    f.chunks[b"EXIF"] = b"x" * 10
    body = pack(f)[:-4][:-3]
    with pytest.raises(HvqError, match="EXIF"):
        unpack(recrc(body))
