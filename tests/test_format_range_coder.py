"""docs/FORMAT.md's description of the range coder is enough to port it: a pure-Python port
written from it produces constriction's words exactly and decodes them."""

import numpy as np
import pytest

from hvqcodec.range_coder import WavefrontDecoder, WavefrontEncoder

M64 = (1 << 64) - 1
PRECISION = 24


def quantiles(row: np.ndarray) -> list[int]:
    """constriction's re-quantization of an integer table into its fixed-point CDF."""
    k, scale = len(row), float((1 << PRECISION) - len(row)) / float(row.sum())
    c, out = 0, []
    for i in range(k):
        out.append(int(float(c) * scale) + i)
        c += int(row[i])
    return out + [1 << PRECISION]


def port_encode(symbols, tables) -> list[int]:
    lower, rng, pending, out = 0, M64, None, []  # pending: [words held back, first word]
    for s, row in zip(symbols, tables):
        cum = quantiles(row)
        scale = rng >> PRECISION
        rng = scale * (cum[s + 1] - cum[s])
        new_lower = (lower + scale * cum[s]) & M64
        if pending and ((new_lower + rng) & M64) > new_lower:  # the carry is resolved
            n, w = pending
            carry = new_lower < lower
            out += [(w + carry) & 0xFFFFFFFF] + [0 if carry else 0xFFFFFFFF] * (n - 1)
            pending = None
        lower = new_lower
        if rng < (1 << 32):
            rng <<= 32
            word, lower = lower >> 32, (lower << 32) & M64
            if pending:
                pending[0] += 1
            elif ((lower + rng) & M64) > lower:
                out.append(word)
            else:
                pending = [1, word]
    if rng != M64:
        point = (lower + (1 << 32) - 1) & M64
        if pending:
            n, w = pending
            carry = point < lower
            out += [(w + carry) & 0xFFFFFFFF] + [0 if carry else 0xFFFFFFFF] * (n - 1)
        out.append(point >> 32)
        if ((lower + rng) & M64) >> 32 == point >> 32:
            out.append(0)
    return out


def port_decode(words, tables) -> list[int]:
    it = iter(words)
    point = (next(it, 0) << 32) | next(it, 0)
    lower, rng, out = 0, M64, []
    for row in tables:
        cum = quantiles(row)
        scale = rng >> PRECISION
        q = ((point - lower) & M64) // scale
        s = max(i for i in range(len(row)) if cum[i] <= q)
        out.append(s)
        lower = (lower + scale * cum[s]) & M64
        rng = scale * (cum[s + 1] - cum[s])
        if rng < (1 << 32):
            lower, rng = (lower << 32) & M64, rng << 32
            point = ((point << 32) & M64) | next(it, 0)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_a_port_from_the_format_document_matches_constriction(seed):
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(2, 300)), int(rng.integers(1, 400))
    # Skewed tables, as a prior's are, so that carries happen; every entry >= 1.
    tables = rng.integers(1, 2**12, (n, k)) ** rng.integers(1, 4)
    tables = (tables * ((1 << PRECISION) - k) // tables.sum(1, keepdims=True) + 1).astype(np.int64)
    symbols = [int(rng.choice(k, p=t / t.sum())) for t in tables]
    # hvqcodec's coder, steered to these symbols: each position's nearest code is its symbol.
    distances = np.ones((n, k))
    distances[np.arange(n), symbols] = 0
    encoder = WavefrontEncoder(distances)
    encoder(np.arange(n), tables)
    data = encoder.finish()
    words = np.frombuffer(data + b"\0" * (-len(data) % 4), "<u4").tolist()
    ported = port_encode(symbols, tables)
    assert ported[: len(words)] == words and not any(ported[len(words) :])  # zeros trimmed
    assert port_decode(words, tables) == symbols
    assert WavefrontDecoder(data)(np.arange(n), tables).tolist() == symbols
