"""Range coding with constriction: code maps driven step by step by a prior's wavefront
(`WavefrontEncoder`, `WavefrontDecoder`), and symbols under fixed tables (`TableEncoder`,
`TableDecoder`).

Each stream has its own coder. The prior hands over integer probability tables (one row per
symbol) and constriction's range coder (`stream.queue`, `Categorical(perfect=False)`) turns
them into 32-bit words. Both sides also add up the ideal cost, -log2 p of every symbol under
those tables, so the overhead of the real stream can be checked.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass

import constriction
import numpy as np

from hvqcodec.errors import HvqError

GROUP_BLOCK = 1 << 22  # symbols sorted by table at a time
_FAMILY = constriction.stream.model.Categorical(perfect=False)


@dataclass
class StreamStats:
    symbols: int = 0
    bits: int = 0  # size of the stream as stored
    ideal_bits: float = 0.0  # sum of -log2 p over the symbols


class _Coder:
    def __init__(self) -> None:
        self.stats = StreamStats()
        self.seconds = 0.0  # spent in the range coder itself, for the speed benchmark

    def _count(self, symbols: np.ndarray, table: np.ndarray) -> None:
        chosen = table[np.arange(len(symbols)), symbols].astype(np.float64)
        self.stats.symbols += len(symbols)
        self.stats.ideal_bits += float(np.log2(table.sum(axis=1) / chosen).sum())


class WavefrontEncoder(_Coder):
    """Step function for `IntegerLevelPrior.code` that chooses and encodes the codes of one level.

    With `lam = 0` each position takes its nearest code. With `lam > 0` it takes the code that
    minimises `distance + lam * mean_nearest_distance * bits`, where bits is the code's cost
    under the prior in its causal context: a rate-distortion optimised quantization that the
    decoder never needs to know about.
    """

    def __init__(self, distances: np.ndarray, lam: float = 0.0) -> None:
        super().__init__()
        self.distances = distances  # (positions, K), raster order
        self.rate_weight = lam * float(distances.min(axis=1).mean()) if lam else 0.0
        self.encoder = constriction.stream.queue.RangeEncoder()

    def __call__(self, positions: np.ndarray, table: np.ndarray) -> np.ndarray:
        cost = self.distances[positions]
        if self.rate_weight:
            bits = np.log2(table.sum(axis=1, keepdims=True)) - np.log2(table)
            cost = cost + self.rate_weight * bits
        symbols = cost.argmin(axis=1).astype(np.int32)
        t0 = time.perf_counter()
        self.encoder.encode(symbols, _FAMILY, table.astype(np.float64))
        self.seconds += time.perf_counter() - t0
        self._count(symbols, table)
        return symbols

    def finish(self) -> bytes:
        """The stream, less up to 3 trailing zero bytes of its last word (the decoder pads the
        stream back to whole 32-bit words)."""
        data = self.encoder.get_compressed().astype("<u4").tobytes()
        data = data[: max(len(data.rstrip(b"\0")), len(data) - 3)]
        self.stats.bits = 8 * len(data)
        return data


class WavefrontDecoder(_Coder):
    """Step function for `IntegerLevelPrior.code` that decodes symbols from a stream."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.stats.bits = 8 * len(data)
        words = np.frombuffer(data + b"\0" * (-len(data) % 4), dtype="<u4").astype(np.uint32)
        self.decoder = constriction.stream.queue.RangeDecoder(words)

    def __call__(self, positions: np.ndarray, table: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            symbols = np.asarray(self.decoder.decode(_FAMILY, table.astype(np.float64)))
        except Exception as e:  # constriction reports a broken stream in several ways
            raise HvqError(f"corrupt payload: range decoder failed ({e})") from None
        self.seconds += time.perf_counter() - t0
        self._count(symbols, table)
        return symbols


class TableCoder(_Coder):
    """Fine symbols, each under one of a few fixed tables (`hvqcodec.families.hyper.integer`):
    the symbols are coded table by table, in index order, and within a table in flat order, so
    that each table becomes one constriction model and each group one call."""

    def __init__(self, tables: np.ndarray, radii: np.ndarray) -> None:
        super().__init__()
        self.tables, self.radii = tables, radii
        self._models: dict[int, object] = {}

    def model(self, index: int):
        if index not in self._models:
            k = 2 * int(self.radii[index]) + 1
            probs = self.tables[index, :k].astype(np.float64)
            self._models[index] = constriction.stream.model.Categorical(probs, perfect=False)
        return self._models[index]

    def _count_groups(self, index: int, shifted: np.ndarray) -> None:
        """The group's symbols and their cost under their table, from the count of each value
        (a block at a time: no per-symbol float arrays)."""
        k = 2 * int(self.radii[index]) + 1
        table = self.tables[index, :k].astype(np.float64)
        counts = np.zeros(k, dtype=np.int64)
        for start in range(0, len(shifted), GROUP_BLOCK):
            counts += np.bincount(shifted[start : start + GROUP_BLOCK], minlength=k)
        self.stats.symbols += len(shifted)
        self.stats.ideal_bits += float(counts @ np.log2(table.sum() / table))

    @staticmethod
    def groups(indices: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(table index, flat positions in order) for each index present, ascending. Sorted a
        block at a time, so that no sort of a 48-megapixel image's 36 million symbols exists
        whole; the positions are int32 where they fit."""
        flat = indices.reshape(-1)
        dtype = np.int32 if flat.size < 2**31 else np.int64
        pieces: dict[int, list[np.ndarray]] = {}
        for start in range(0, flat.size, GROUP_BLOCK):
            block = flat[start : start + GROUP_BLOCK]
            order = np.argsort(block, kind="stable")
            bounds = np.flatnonzero(np.diff(block[order])) + 1
            for g in np.split(order, bounds):
                pieces.setdefault(int(block[g[0]]), []).append((g + start).astype(dtype))
        for index in sorted(pieces):
            yield index, np.concatenate(pieces.pop(index))


class TableEncoder(TableCoder):
    def __init__(self, tables: np.ndarray, radii: np.ndarray) -> None:
        super().__init__(tables, radii)
        self.encoder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Int32 symbols (any shape) under tables `indices` (same shape). Each is first clamped
        to its table's range: returns the symbols as the decoder will see them."""
        if symbols.dtype != np.int32:
            raise TypeError(f"symbols must be int32, not {symbols.dtype}")
        # Clamped in one C-order copy: the caller's array stays as given, whatever its layout.
        flat = np.array(symbols, order="C").reshape(-1)
        t0 = time.perf_counter()
        for index, positions in self.groups(indices):
            radius = int(self.radii[index])
            shifted = np.clip(flat[positions], -radius, radius)
            flat[positions] = shifted
            shifted += radius
            self.encoder.encode(shifted, self.model(index))
            self._count_groups(index, shifted)
        self.seconds += time.perf_counter() - t0
        return flat.reshape(symbols.shape)

    finish = WavefrontEncoder.finish


class TableDecoder(TableCoder):
    def __init__(self, data: bytes, tables: np.ndarray, radii: np.ndarray) -> None:
        super().__init__(tables, radii)
        self.stats.bits = 8 * len(data)
        words = np.frombuffer(data + b"\0" * (-len(data) % 4), dtype="<u4").astype(np.uint32)
        self.decoder = constriction.stream.queue.RangeDecoder(words)

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """The symbols under tables `indices`, in the shape of `indices` (int32)."""
        flat = np.zeros(indices.size, dtype=np.int32)
        t0 = time.perf_counter()
        for index, positions in self.groups(indices):
            try:
                shifted = np.asarray(self.decoder.decode(self.model(index), len(positions)))
            except Exception as e:  # constriction reports a broken stream in several ways
                raise HvqError(f"corrupt payload: range decoder failed ({e})") from None
            self._count_groups(index, shifted)
            shifted -= int(self.radii[index])
            flat[positions] = shifted
        self.seconds += time.perf_counter() - t0
        return flat.reshape(indices.shape)
