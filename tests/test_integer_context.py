"""The context model's integer twin: exact gains, the exact decoded latent, and group networks
that agree with the float ones, in tiles or whole."""

import math

import numpy as np
import pytest
import torch

from hvqcodec.families.hyper import integer_context
from hvqcodec.families.hyper.context import ChannelContext
from hvqcodec.families.hyper.context import anchors as context_anchors
from hvqcodec.families.hyper.integer import ONE, scale_indices
from hvqcodec.families.hyper.integer_context import ExactGains, IntegerChannelContext, exact_exp

GROUPS = (2, 2, 4)


def trained(checkerboard: bool = False) -> ChannelContext:
    torch.manual_seed(0)
    ctx = ChannelContext(GROUPS, 8, checkerboard=checkerboard)
    for net in ctx.nets:  # a trained context: its last layers no longer zero
        torch.nn.init.normal_(net[4].weight, std=0.1)
        torch.nn.init.normal_(net[4].bias, std=0.1)
    return ctx.eval()


@pytest.fixture(scope="module")
def context() -> ChannelContext:
    return trained()


def maps(seed: int, channels: int, h: int = 11, w: int = 13, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(channels, h, w, generator=g) * scale


def test_exact_gains_are_the_correctly_rounded_exp():
    logs = torch.tensor([-3 * ONE, -1234, 0, 1, 5000, 2 * ONE + 17])
    got = exact_exp(logs)
    want = [round(2**integer_context.GAIN_BITS * math.exp(v / ONE)) for v in logs.tolist()]
    assert all(abs(a - b) <= 1 for a, b in zip(got.tolist(), want))
    assert got[2] == 2**integer_context.GAIN_BITS  # exp(0) exactly


def test_the_exact_latent_is_the_float_models_to_its_last_fraction_bit():
    log_gain, log_inverse = (
        torch.tensor([ONE, -ONE // 2, 3 * ONE]),
        torch.tensor([-ONE, 700, -3 * ONE]),
    )
    gains = ExactGains(log_gain, log_inverse)
    symbols = torch.randint(-40, 40, (3, 5, 7), generator=torch.Generator().manual_seed(1))
    mean = torch.round(maps(2, 3, 5, 7) * ONE)
    got = gains.latent(symbols, mean, slice(None), torch.empty(3, 5, 7, dtype=torch.int32))
    assert got.dtype == torch.int32
    got = got.double() / ONE
    g = torch.exp(log_gain.double() / ONE)[:, None, None]
    inverse = torch.exp(log_inverse.double() / ONE)[:, None, None]
    want = (symbols + mean / ONE * g) * inverse
    assert torch.allclose(got, want, rtol=1e-4, atol=2 / ONE)


def test_the_integer_context_computes_the_float_one(context):
    twin = IntegerChannelContext(context)
    for k in range(1, len(GROUPS)):
        before, size = sum(GROUPS[:k]), GROUPS[k]
        decoded, mean, log_scale = maps(3, before), maps(4, size), maps(5, size, scale=0.5)
        with torch.no_grad():
            want = context.refine(k, decoded[None], mean[None], log_scale[None])
        ints = [torch.round(t * ONE).to(torch.int32) for t in (decoded, mean, log_scale)]
        got = twin.refine(k, *ints)
        for a, b in zip(got, want):
            assert a.dtype == torch.int32
            torch.testing.assert_close(a.double() / ONE, b[0].double(), rtol=0, atol=2e-3)
    first = twin.refine(0, None, ints[1], ints[2])
    assert first[0] is ints[1] and first[1] is ints[2]  # group 0 has no context


def test_the_integer_checkerboard_computes_the_float_one_in_both_passes():
    ctx = trained(checkerboard=True)
    twin = IntegerChannelContext(ctx)
    for k in range(len(GROUPS)):
        before, size = sum(GROUPS[:k]), GROUPS[k]
        decoded, mean, log_scale = maps(3, before), maps(4, size), maps(5, size, scale=0.5)
        anchors = maps(6, size) * context_anchors(*mean.shape[1:])[0]
        ints = [torch.round(t * ONE).to(torch.int32) for t in (decoded, mean, log_scale, anchors)]
        decoded = decoded[None] if k else None
        if k == 0:
            ints[0] = None
        passes = []
        for seen, seen_int in ((None, None), (anchors[None], ints[3])):
            with torch.no_grad():
                want = ctx.refine(k, decoded, mean[None], log_scale[None], seen)
            got = twin.refine(k, *ints[:3], seen_int)
            for a, b in zip(got, want):
                torch.testing.assert_close(a.double() / ONE, b[0].double(), rtol=0, atol=2e-3)
            passes.append(got[0])
        # The anchors' pass does not see them; the other positions' does.
        assert not torch.equal(passes[0], passes[1]), k
    first = twin.refine(0, None, ints[1], ints[2])
    assert first[0] is ints[1] and first[1] is ints[2]  # group 0's anchors have no context


def test_tiles_give_the_whole_maps_integers_and_need_their_halo(context, monkeypatch):
    twin = IntegerChannelContext(context)
    k, before, size = 2, sum(GROUPS[:2]), GROUPS[2]
    ints = [torch.round(maps(6 + i, c, 23, 19) * ONE).to(torch.int32)
            for i, c in enumerate((before, size, size))]  # fmt: skip
    whole = twin.refine(k, *ints)
    monkeypatch.setattr(integer_context, "TILE", 5)
    tiled = twin.refine(k, *ints)
    assert all(torch.equal(a, b) for a, b in zip(tiled, whole))
    monkeypatch.setattr(integer_context, "REACH", 1)
    assert not all(torch.equal(a, b) for a, b in zip(twin.refine(k, *ints), whole))


def test_a_port_of_the_formats_exact_latent_gives_its_integers():
    """docs/FORMAT.md's formulas for the exact gains and decoded latent, in Python integers."""
    from decimal import ROUND_HALF_EVEN, Decimal, localcontext

    def exact(v: int) -> int:
        with localcontext() as ctx:
            ctx.prec = 60
            x = Decimal(2) ** 16 * (Decimal(v) / 2**14).exp()
            return int(x.to_integral_value(rounding=ROUND_HALF_EVEN))

    g = torch.Generator().manual_seed(3)
    lg, lig = (
        torch.randint(-3 * ONE, 3 * ONE, (20,), generator=g),
        torch.randint(-ONE, ONE, (20,), generator=g),
    )
    symbols = torch.randint(-300, 300, (20, 3, 5), generator=g)  # more than one chunk
    symbols[3, 1, 2], symbols[17, 0, 4] = 2047, -2048  # a crafted file's: clamped
    mean = torch.randint(-(2**20), 2**20, (20, 3, 5), generator=g)
    out = torch.empty(20, 3, 5, dtype=torch.int32)
    got = ExactGains(lg, lig).latent(symbols, mean, slice(None), out)
    clamped = 0
    for c, y, x in np.ndindex(*symbols.shape):
        gi, gp = exact(int(lig[c])), exact(int(lg[c] + lig[c]))
        d = (int(symbols[c, y, x]) * 2**14 * gi + int(mean[c, y, x]) * gp + 2**15) // 2**16
        clamped += abs(d) > 2**24
        assert int(got[c, y, x]) == max(-(2**24), min(2**24, d))
    assert clamped >= 2


@pytest.mark.parametrize("checkerboard", [False, True])
def test_a_port_of_the_formats_group_network_gives_its_tables(checkerboard):
    """docs/FORMAT.md's group network (weights quantized from float16 by frexp, 3x3 and 1x1
    integer layers, requantization, clamps) and scale index, in numpy int64, written from the
    document: the same integers as the package's; with a checkerboard, in the pass of the
    positions that are not anchors."""
    torch.manual_seed(1)
    ctx = ChannelContext(GROUPS, 8, checkerboard=checkerboard)
    with torch.no_grad():
        for p in ctx.parameters():  # a trained context, as a weights file holds it: float16
            p.copy_((torch.randn_like(p) * 0.3).half().float())
    act_max, s0, ds, t = 2**24, -36164, 2016, 64

    def quantized(layer):
        w = layer.weight.detach().double().numpy().reshape(layer.weight.shape[0], -1)
        peak = float(np.abs(w).max())
        s = 15 - math.frexp(peak)[1] if peak else 0
        bias = np.round(layer.bias.detach().double().numpy() * 2.0 ** (s + 14))
        return np.round(w * 2.0**s).astype(np.int64), bias.astype(np.int64), s

    def requantize(acc, s):  # floor(acc / 2^s + 1/2), exactly
        return (acc + (1 << (s - 1))) >> s if s > 0 else acc << -s

    def conv3(x, layer):  # x (H, W, C) int64; zero outside the map
        w, b, s = quantized(layer)
        h, wd, c = x.shape
        pad = np.zeros((h + 2, wd + 2, c), np.int64)
        pad[1:-1, 1:-1] = x
        # Input-channel-major taps: column (in * 9 + ky * 3 + kx) of the flattened weight.
        cols = np.stack([pad[ky : ky + h, kx : kx + wd] for ky in range(3) for kx in range(3)], -1)
        acc = cols.reshape(h, wd, c * 9) @ w.T + b
        return np.clip(requantize(acc, s), -act_max, act_max)

    g = np.random.default_rng(7)
    shape = (6, 9)
    rows, cols = np.indices(shape)
    for k in range(0 if checkerboard else 1, len(GROUPS)):
        before, size = sum(GROUPS[:k]), GROUPS[k]
        decoded = g.integers(-(2**17), 2**17, (*shape, before))
        mean = g.integers(-(2**16), 2**16, (*shape, size))
        log_scale = g.integers(-3 * 2**14, 2**15, (*shape, size))
        anchors = g.integers(-(2**17), 2**17, (*shape, size)) * ((rows + cols) % 2 == 0)[..., None]
        net = ctx.nets[k if checkerboard else k - 1]
        x = np.concatenate([decoded, *([anchors] if checkerboard else []), mean, log_scale], -1)
        e = np.maximum(conv3(np.maximum(conv3(x, net[0]), 0), net[2]), 0)
        w, b, s = quantized(net[4])
        o = requantize(e @ w.T + b, s)
        refined = np.clip(x[..., -2 * size :] + o, -act_max, act_max)
        log_gain = g.integers(-(2**14), 2**15, size)
        index = np.clip((refined[..., size:] + log_gain - s0) // ds, 0, t - 1)

        ints = [torch.from_numpy(a).permute(2, 0, 1).to(torch.int32).contiguous()
                for a in (decoded, mean, log_scale, anchors)]  # fmt: skip
        if k == 0:
            ints[0] = None
        seen = ints[3] if checkerboard else None
        got_mean, got_log_scale = IntegerChannelContext(ctx).refine(k, *ints[:3], seen)
        assert np.array_equal(got_mean.permute(1, 2, 0).numpy(), refined[..., :size])
        assert np.array_equal(got_log_scale.permute(1, 2, 0).numpy(), refined[..., size:])
        got_index = scale_indices(got_log_scale, torch.from_numpy(log_gain))
        assert np.array_equal(got_index.permute(1, 2, 0).numpy(), index)
        assert len(np.unique(index)) > 3  # the tables the scales pick vary
