"""Files of a model with a context model for its fine level: groups coded in turn, each under
tables that its integer twin computes from the exact decoded latent of those before it (with a
checkerboard: each group's anchors, then its other positions)."""

import numpy as np
import pytest
import torch

from hvqcodec import Codec
from hvqcodec.families.hyper import integer_context, tiles
from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig
from hvqcodec.families.hyper.weights import pack_weights
from hvqcodec.models import build_model
from tests.conftest import TINY_HYPER, round_trip, tiny_hyper
from tests.test_refinement import QUALITY, file_loss

GROUPS = (2, 2, 4, 8)


def context_model(trained: bool = True, checkerboard: bool = False) -> Codec:
    """A tiny model with a context; `trained`: its corrections no longer zero."""
    config = {"context_groups": GROUPS, "context_checkerboard": checkerboard}
    if trained:
        return Codec(build_model(tiny_hyper(**config)))
    torch.manual_seed(0)
    net = VQHyperprior(VQHyperpriorConfig(**{**TINY_HYPER, **config}))
    return Codec(build_model(pack_weights("tiny-v3", net)))


@pytest.fixture(scope="module", params=[False, True], ids=["channels", "checkerboard"])
def codec(request) -> Codec:
    return context_model(checkerboard=request.param)


def test_every_quality_decodes_its_codes_and_the_encoders_pixels(codec, dog):
    for q in (0, 40, 100):
        enc, _ = round_trip(codec, dog, q)
        ideal = sum(s.ideal_bits for s in enc.stats.values())
        coded = sum(s.bits for s in enc.stats.values())
        assert ideal <= coded <= ideal * 1.01 + 32 * len(enc.stats)
        float_bits = codec.model.float_bits(enc.codes, enc.hundredths)["fine"]
        assert abs(float_bits - enc.stats["fine"].ideal_bits) < 0.02 * float_bits + 64


def test_the_context_decides_the_tables(codec, dog):
    """The same weights with the corrections at zero code the same symbols under other tables."""
    plain = context_model(trained=False, checkerboard=codec.model.context.checkerboard)
    a, b = codec.encode_detailed(dog, 60), plain.encode_detailed(dog, 60)
    np.testing.assert_array_equal(a.codes["top"], b.codes["top"])
    assert a.stats["fine"].ideal_bits != b.stats["fine"].ideal_bits


def test_tiles_give_the_untiled_file_and_pixels(codec, dog, monkeypatch):
    data = codec.encode(dog, 70)
    pixels = np.asarray(codec.decode(data))
    monkeypatch.setattr(tiles, "TILE_PIXELS", 64)
    monkeypatch.setattr(integer_context, "TILE", 3)
    assert codec.encode(dog, 70) == data
    assert np.array_equal(np.asarray(codec.decode(data)), pixels)


def test_previews_decode(codec, dog):
    data = codec.encode(dog)
    assert codec.decode(data, preview=True).size == (160, 272)


@pytest.mark.slow
def test_effort_refines_and_keeps_the_lower_loss_file(shipped_codec, dog):
    """The shipped model (hvq-v4) has a context model, and a trained synthesis that responds to
    its latent (a random one barely does): effort 1's file decodes exactly and has a lower loss
    than effort 0's."""
    assert shipped_codec.model.net.config.context_groups
    plain = shipped_codec.encode(dog, QUALITY / 100)
    refined = shipped_codec.encode_detailed(dog, QUALITY / 100, effort=1)
    assert (
        shipped_codec.decode_detailed(refined.data).codes["fine"] == refined.codes["fine"]
    ).all()
    assert file_loss(shipped_codec, dog, refined.data) < file_loss(shipped_codec, dog, plain)


def test_the_table_coder_returns_what_it_coded_from_a_masked_selection():
    """A checkerboard pass codes `symbols[:, mask]`, which numpy lays out in another order than
    C's: the clamp to the tables' range must still reach what the encoder keeps."""
    from hvqcodec.families.hyper.context import anchors
    from hvqcodec.range_coder import TableDecoder, TableEncoder

    model = context_model(checkerboard=True).model
    radius = int(model.radii[0])
    symbols = np.zeros((3, 5, 4), dtype=np.int32)
    symbols[1, 2, 3], symbols[2, 4, 1] = radius + 5, -radius - 9
    picked = symbols[:, ~anchors(5, 4)[0, 0].bool().numpy()]  # the second pass's positions
    assert not picked.flags.c_contiguous
    indices = np.zeros(picked.shape, dtype=np.uint8)
    coder = TableEncoder(model.tables, model.radii)
    coded = coder.encode(picked, indices)
    assert coded.max() == radius and coded.min() == -radius
    decoded = TableDecoder(coder.finish(), model.tables, model.radii).decode(indices)
    assert np.array_equal(decoded, coded)


def test_the_table_coder_leaves_the_callers_symbols_as_given():
    """The clamp goes to a copy whatever the layout: a contiguous array is left as given, as a
    strided one always was."""
    from hvqcodec.range_coder import TableEncoder

    model = context_model().model
    radius = int(model.radii[0])
    for symbols in (np.arange(-40, 40, dtype=np.int32).reshape(2, 40),
                    np.arange(-40, 40, dtype=np.int32).reshape(2, 40)[:, ::2]):  # fmt: skip
        given = symbols.copy()
        coded = TableEncoder(model.tables, model.radii).encode(
            symbols, np.zeros(symbols.shape, dtype=np.uint8)
        )
        assert np.array_equal(symbols, given)
        assert np.array_equal(coded, np.clip(given, -radius, radius))


def test_targets_are_searched_on_the_estimate_and_met_by_real_files(codec, dog, monkeypatch):
    """The estimate (no context passes, ideal costs, a crop's PSNR) follows the real files
    closely enough that a few real trials settle a target."""
    from hvqcodec.families.hyper.pipeline import Encoder
    from hvqcodec.metrics import psnr

    encoder = codec.model.encoder(dog)
    guesses, reached = [], []
    for q in (1000, 5000, 9000):
        trial = encoder.streams(q)
        size = sum(len(c.stream) for c in trial.coded.values())
        assert abs(encoder.estimate(q, "size") / size - 1) < 0.25
        guesses.append(encoder.estimate(q, "psnr"))
        reached.append(psnr(dog, encoder.reconstruct(trial)))
        assert abs(guesses[-1] - reached[-1]) < 3
    assert guesses == sorted(guesses)
    real = []
    streams = Encoder.streams
    monkeypatch.setattr(Encoder, "streams", lambda self, q: real.append(q) or streams(self, q))
    budget = int(0.6 * len(codec.encode(dog, 100)))
    real.clear()
    assert 0.97 * budget <= len(codec.encode(dog, target_size=budget)) <= budget
    assert len(real) <= 4
    goal = (reached[0] + reached[-1]) / 2
    real.clear()
    enc = codec.encode_detailed(dog, target_psnr=goal)
    assert goal <= enc.psnr <= goal + 0.3 and not enc.notes and len(real) <= 5
