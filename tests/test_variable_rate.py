"""Qualities from residual bottom stages, prefixes of streams, and the preview."""
# The tiny staged model's scale: knots at 0, 33.33, 66.67 and 100, each one more stage.

import io

import numpy as np
import pytest
import torch

from hvqcodec import Codec, HvqError, container
from hvqcodec.container import PREVIEW_STREAMS
from hvqcodec.families.vqvae.weights import keep_stages, pack_weights
from hvqcodec.layers import VectorQuantizer
from hvqcodec.layers.residual_quantize import dropout_stages, residual_quantize
from hvqcodec.models import build_model


def test_dropout_keeps_a_prefix_of_stages_or_none():
    gen = torch.Generator().manual_seed(0)
    keep = dropout_stages(4000, 3, gen, p_none=0.25)
    assert set(keep.tolist()) == {0, 1, 2, 3}
    assert 0.2 < (keep == 0).float().mean() < 0.3
    # Dropping for half of the samples: the other half keeps every stage.
    keep = dropout_stages(4000, 3, gen, p_drop=0.5)
    assert 0.5 + 0.5 / 3 - 0.05 < (keep == 3).float().mean() < 0.5 + 0.5 / 3 + 0.05
    assert (keep >= 1).all()


def test_residual_stages_quantize_what_the_earlier_ones_left():
    torch.manual_seed(0)
    stages = [VectorQuantizer(16, 4).eval() for _ in range(3)]
    z = torch.randn(2, 4, 5, 5)
    total, outs, _ = residual_quantize(stages, z)
    residual, expected = z, torch.zeros_like(z)
    for q, out in zip(stages, outs):
        np.testing.assert_array_equal(out.indices, q.encode(residual))
        residual = residual - q.lookup(out.indices)
        expected = expected + q.lookup(out.indices)
    torch.testing.assert_close(total, expected)
    # A sample that keeps one stage gets the first stage's vectors only; none gets zeros.
    kept, _, _ = residual_quantize(stages, z, torch.tensor([1, 0]))
    torch.testing.assert_close(kept[0], stages[0].lookup(outs[0].indices)[0])
    assert not kept[1].any()


def test_each_knot_codes_one_more_stage(staged_codec, dog):
    assert staged_codec.qualities == (0, 33.33, 66.67, 100)
    sizes = []
    for stages, q in enumerate(staged_codec.qualities):
        enc = staged_codec.encode_detailed(dog, q)
        header = container.unpack(enc.data)
        assert header.quality == round(100 * q) and enc.quality == q
        assert len(header.streams) == PREVIEW_STREAMS + stages
        dec = staged_codec.decode_detailed(enc.data)
        assert list(dec.codes) == list(enc.codes)
        for name in enc.codes:
            np.testing.assert_array_equal(enc.codes[name], dec.codes[name])
        sizes.append(len(enc.data))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_streams_are_a_prefix_across_qualities(staged_codec, dog):
    low = container.unpack(staged_codec.encode(dog, 0)).streams
    middle = container.unpack(staged_codec.encode(dog, 50)).streams
    high = container.unpack(staged_codec.encode(dog, 100)).streams
    assert high[: len(low)] == low and middle[:-1] == high[: len(middle) - 1]


def test_preview_reads_only_top_and_middle(staged_codec, dog):
    data = staged_codec.encode(dog, 100)
    streams = container.unpack(data).streams
    f = io.BytesIO(data)
    prefix = container.read_prefix(f, PREVIEW_STREAMS)
    assert f.tell() == len(prefix) < len(data) - sum(len(s) for s in streams[PREVIEW_STREAMS:])
    preview = staged_codec.decode_detailed(prefix, preview=True)
    assert list(preview.codes) == ["top", "middle"]
    assert preview.image.size == (dog.shape[1], dog.shape[0])
    # The same picture as the preview of the whole file, and of a lower quality's file.
    whole = staged_codec.decode(data, preview=True)
    assert np.array_equal(np.asarray(whole), np.asarray(preview.image))
    low = staged_codec.decode(staged_codec.encode(dog, 0), preview=True)
    assert np.array_equal(np.asarray(low), np.asarray(preview.image))


def test_preview_of_a_truncated_header_fails_cleanly(staged_codec, dog):
    data = staged_codec.encode(dog, 100)
    for cut in (0, 2, 9, 14):
        with pytest.raises(HvqError):
            staged_codec.decode(data[:cut], preview=True)


def test_more_streams_than_the_model_has_is_refused(staged_codec, tiny_codec, dog):
    data = staged_codec.encode(dog, 100)
    f = container.unpack(data)
    f.model_id = tiny_codec.model.model_id
    with pytest.raises(HvqError, match="streams"):
        tiny_codec.decode(container.pack(f))


@pytest.mark.parametrize("quality", [100.01, -1, float("nan"), "high"])
def test_a_quality_off_the_scale_names_the_range(staged_codec, dog, quality):
    with pytest.raises(HvqError, match="0 to 100|0..100"):
        staged_codec.encode(dog, quality)


def test_a_model_cut_to_fewer_stages_codes_the_same_streams(staged_codec, dog):
    m = staged_codec.model
    cut = Codec(build_model(keep_stages(pack_weights("cut", m.vqvae, m.prior), 2)))
    assert cut.qualities == (0, 50, 100) and len(cut.model.vqvae.streams) == 4
    assert cut.model.model_id != m.model_id
    assert (
        container.unpack(cut.encode(dog, 100)).streams
        == container.unpack(staged_codec.encode(dog, 66.67)).streams
    )
    with pytest.raises(HvqError):
        keep_stages(pack_weights("cut", m.vqvae, m.prior), 4)
