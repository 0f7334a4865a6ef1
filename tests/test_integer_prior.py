"""The integer-exact prior: batching- and thread-independent, and as good as the float one."""

import numpy as np
import pytest
import torch

from hvqcodec.errors import HvqError
from hvqcodec.families.vqvae.integer import IntegerPrior
from hvqcodec.families.vqvae.model import LEVELS
from hvqcodec.families.vqvae.prior import HierarchicalPrior
from hvqcodec.integer_layers import PROB_BITS, exp_table
from hvqcodec.integer_prior import wavefront_schedule


def encoded_levels(codec, dog):
    encoded = codec.encode_detailed(dog)
    return {name: encoded.codes[name] for name in LEVELS}


def wavefront_tables(level, codes, upper):
    """The tables `code` hands to the range coder, one wavefront step at a time."""
    seen = np.zeros((codes.size, level.num_codes), dtype=np.int64)

    def step(positions, table):
        seen[positions] = table
        return codes.reshape(-1)[positions]

    level.code(upper, codes.shape, step)
    return seen


def test_wavefront_tables_equal_one_batch_bit_for_bit(wide_prior_codec, dog):
    codes = encoded_levels(wide_prior_codec, dog)
    for name, level in wide_prior_codec.model.integer_prior.levels.items():
        upper = wide_prior_codec.model.prior.upper_of(name, codes)
        batch = level.all_tables(codes[name], upper)
        np.testing.assert_array_equal(wavefront_tables(level, codes[name], upper), batch)


def test_tables_do_not_depend_on_the_thread_count(wide_prior_codec, dog):
    codes = encoded_levels(wide_prior_codec, dog)
    level = wide_prior_codec.model.integer_prior.levels["bottom"]
    upper = wide_prior_codec.model.prior.upper_of("bottom", codes)
    previous = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            results.append(level.all_tables(codes["bottom"], upper))
    finally:
        torch.set_num_threads(previous)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_tables_are_valid_for_the_range_coder(wide_prior_codec, dog):
    codes = encoded_levels(wide_prior_codec, dog)
    for name, level in wide_prior_codec.model.integer_prior.levels.items():
        tables = level.all_tables(codes[name], wide_prior_codec.model.prior.upper_of(name, codes))
        assert tables.min() >= 1
        assert tables.sum(axis=1).max() <= 2**PROB_BITS


def test_integer_prior_costs_under_one_percent_against_the_float_prior(wide_prior_codec, dog):
    codes = encoded_levels(wide_prior_codec, dog)
    maps = {k: torch.from_numpy(v)[None] for k, v in codes.items()}
    prior = wide_prior_codec.model.prior
    with torch.no_grad():
        float_bits = {k: float(v) * codes[k].size for k, v in prior(maps).items()}
    for name, level in wide_prior_codec.model.integer_prior.levels.items():
        tables = level.all_tables(codes[name], wide_prior_codec.model.prior.upper_of(name, codes))
        chosen = tables[np.arange(codes[name].size), codes[name].reshape(-1)]
        int_bits = float(np.log2(tables.sum(axis=1) / chosen).sum())
        assert int_bits <= 1.01 * float_bits[name], (name, int_bits, float_bits[name])


def test_a_trained_looking_prior_stays_close_to_its_float_probabilities(wide_prior_codec, dog):
    """Scaled-up logits (as a trained prior has) still map to tables close to the softmax."""
    codes = encoded_levels(wide_prior_codec, dog)
    prior = HierarchicalPrior(wide_prior_codec.model.prior.config, _vq_config(wide_prior_codec))
    prior.load_state_dict(wide_prior_codec.model.prior.state_dict())
    with torch.no_grad():
        prior.levels["top"].head2.weight.mul_(20)
        logits = prior.levels["top"].logits(torch.from_numpy(codes["top"])[None], [])
    p = torch.softmax(logits.double(), -1).reshape(-1, logits.shape[-1]).numpy()
    tables = IntegerPrior(prior).levels["top"].all_tables(codes["top"], [])
    q = tables / tables.sum(axis=1, keepdims=True)
    assert np.abs(q - p).max() < 1e-3


def _vq_config(codec):
    return codec.model.vqvae.config


def test_weights_that_could_overflow_float64_are_refused(wide_prior_codec):
    prior = HierarchicalPrior(wide_prior_codec.model.prior.config, _vq_config(wide_prior_codec))
    with torch.no_grad():
        prior.levels["middle"].causal.bias.fill_(1e12)
    with pytest.raises(HvqError, match="2\\*\\*53"):
        IntegerPrior(prior)


def test_softmax_table_and_schedule():
    table = exp_table()
    assert int(table[0]) == 2**30 and int(table[-1]) >= 1
    assert bool((table[1:] <= table[:-1]).all())
    steps = wavefront_schedule(4, 6, 5)
    done = set()
    for positions in steps:
        for p in positions.tolist():
            y, x = divmod(p, 6)
            for dy, dx in [(-1, 2), (-1, -2), (0, -1), (-2, 0)]:
                if 0 <= y + dy < 4 and 0 <= x + dx < 6:
                    assert (y + dy) * 6 + x + dx in done
        done.update(positions.tolist())
    assert done == set(range(24))


def test_conditioning_in_bands_equals_the_whole_map(wide_prior_codec, dog, monkeypatch):
    import hvqcodec.integer_prior as integer_prior

    codes = encoded_levels(wide_prior_codec, dog)
    level = wide_prior_codec.model.integer_prior.levels["bottom"]
    upper = wide_prior_codec.model.prior.upper_of("bottom", codes)
    whole = level.conditioning(upper, codes["bottom"].shape)
    monkeypatch.setattr(integer_prior, "BAND_POSITIONS", 16)
    banded = level.conditioning(upper, codes["bottom"].shape)
    assert torch.equal(banded, whole)


def test_integer_conditioning_tracks_the_float_network(wide_prior_codec, dog):
    from hvqcodec.integer_layers import ACT_BITS

    codes = encoded_levels(wide_prior_codec, dog)
    upper = wide_prior_codec.model.prior.upper_of("bottom", codes)
    exact = wide_prior_codec.model.integer_prior.levels["bottom"].conditioning(
        upper, codes["bottom"].shape
    )
    with torch.no_grad():
        maps = [torch.from_numpy(c)[None] for c in upper]
        float_level = wide_prior_codec.model.prior.levels["bottom"]
        ref = float_level.conditioning(maps, codes["bottom"].shape)
    ref = ref.reshape(exact.shape).double()
    err = (exact.double() / 2**ACT_BITS - ref).abs().max()
    assert err < 1e-3 * ref.abs().max(), float(err)
