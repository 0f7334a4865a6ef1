"""The 0-100 quality scale and the size and PSNR targets: mapping, search, bounds and errors."""

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hvqcodec import Codec, HvqError, container, encode
from hvqcodec.cli import main
from hvqcodec.metrics import psnr
from hvqcodec.models import build_model
from hvqcodec.rate_control import (
    FULL,
    StageScale,
    Target,
    corrected_search,
    search,
    to_hundredths,
)
from tests.conftest import IMAGES, tiny_hyper


@pytest.fixture(scope="module")
def hyper() -> Codec:
    return Codec(build_model(tiny_hyper()))


def test_the_stage_scale_rises_stage_by_stage_and_weight_by_weight():
    scale = StageScale(((0, 0), (5000, 1), (7500, 2), (9000, 3), (10000, 4)))
    points = [scale.point(q) for q in range(0, FULL + 1, 25)]
    for (s0, lam0), (s1, lam1) in zip(points, points[1:]):
        assert s1 >= s0 and (s1 > s0 or lam1 <= lam0)  # more stages, or a lighter rate weight
    assert scale.point(0) == (0, 0.0) and scale.point(5000) == (1, 0.0)
    assert scale.point(5001)[1] == pytest.approx(1.0, rel=1e-3) and scale.point(FULL) == (4, 0.0)
    assert scale.point(7499)[1] < 1e-3  # the weight reaches 0 at a knot without a jump


def test_qualities_become_hundredths_rounding_half_up_and_refusing_non_numbers():
    assert [to_hundredths(q) for q in (0, 62.125, 0.375, 33.333, "75", 100)] == [
        0, 6213, 38, 3333, 7500, 10000]  # fmt: skip
    for bad in (True, 1e400, 10**400, float("nan"), -0.01, 100.01, "high", None):
        with pytest.raises(HvqError):
            to_hundredths(bad)


@pytest.mark.slow
def test_a_shipped_model_loaded_from_its_file_keeps_its_scale():
    from hvqcodec.shipped import shipped_path

    assert Codec(str(shipped_path("hvq-v2"))).model.scale == Codec("hvq-v2").model.scale


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hyper", "staged_codec"])
def test_rate_rises_along_the_scale(name, request, dog):
    codec = request.getfixturevalue(name)
    sizes = [len(codec.encode(dog, q)) for q in range(0, 101, 10)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


@pytest.mark.slow
def test_the_shipped_scale_is_monotonic_in_rate_and_psnr(shipped_codec, dog):
    rows = []
    for q in (0, 20, 40, 50, 60, 70, 75, 80, 90, 95, 100):
        data = shipped_codec.encode(dog, q)
        rows.append((len(data), psnr(dog, np.asarray(shipped_codec.decode(data)))))
    sizes, quality = zip(*rows)
    assert list(sizes) == sorted(sizes)
    # Codes chosen for rate trade error in the latent, not in pixels: just below a knot, where
    # the rate weight is nearly 0, PSNR may sit a few thousandths of a dB above the knot's.
    assert all(b > a - 0.005 for a, b in zip(quality, quality[1:])), quality
    assert quality[-1] - quality[0] > 5


def _search(values, target: Target, knots=()) -> tuple[int, int]:
    """Run `search` over a step function of the quality; (result, trials)."""
    calls = []

    def score(q):
        calls.append(q)
        return target.score(values(q))

    return search(score, target, knots), len(calls)


def test_a_jump_just_past_a_knot_settles_the_search_at_once():
    size = lambda q: 1000 + q / 10 if q <= 7500 else 3000 + q / 10  # noqa: E731
    knots = (0, 5000, 7500, 10000)
    assert _search(size, Target("size", 2000, "2000 bytes"), knots) == (7500, 4)
    assert _search(size, Target("psnr", 2000, "x"), knots) == (7501, 4)
    smooth = lambda q: 1000 * math.exp(3 * q / FULL)  # noqa: E731  no jump: the probe costs one
    q, trials = _search(smooth, Target("size", 5000, "5000 bytes"), knots)
    assert 0.97 * 5000 <= smooth(q) <= 5000 and trials <= 8


def test_search_lands_in_the_window_of_a_smooth_curve():
    target = Target("size", 5000, "5000 bytes")
    q, trials = _search(lambda q: 1000 * math.exp(3 * q / FULL), target)
    assert 0.97 * 5000 <= 1000 * math.exp(3 * q / FULL) <= 5000 and trials <= 6
    target = Target("psnr", 30.0, "30 dB")
    q, trials = _search(lambda q: 20 + 15 * (q / FULL) ** 2, target)
    assert 30 <= 20 + 15 * (q / FULL) ** 2 <= 30.3 and trials <= 8


def test_search_across_a_jump_keeps_the_safe_side():
    size = lambda q: 1000 if q <= 7500 else 3000  # noqa: E731  a stage coming in
    q, trials = _search(size, Target("size", 2000, "2000 bytes"))
    assert size(q) == 1000 and trials <= 12
    q, _ = _search(size, Target("psnr", 2000, "x"))  # the same curve read as a PSNR
    assert size(q) == 3000


def _corrected(values, estimate, target: Target) -> tuple[int, int]:
    """Run `corrected_search` with a stand-in `estimate` of `values`; (result, real trials)."""
    calls = []

    def score(q):
        calls.append(q)
        return target.score(values(q))

    return corrected_search(score, lambda q: target.score(estimate(q)), target), len(calls)


def test_an_estimate_off_by_a_drifting_amount_costs_few_real_trials():
    size = lambda q: 1000 * math.exp(3 * q / FULL)  # noqa: E731
    target = Target("size", 5000, "5000 bytes")
    q, trials = _corrected(size, lambda q: 1.15 * size(q) + 200 * q / FULL, target)
    assert 0.97 * 5000 <= size(q) <= 5000 and trials <= 3
    quality = lambda q: 20 + 15 * (q / FULL) ** 2  # noqa: E731
    target = Target("psnr", 30.0, "30 dB")
    q, trials = _corrected(quality, lambda q: quality(q) + 2 - 0.5 * q / FULL, target)
    assert 30 <= quality(q) <= 30.3 and trials <= 3


def test_a_useless_estimate_still_finds_what_search_accepts():
    size = lambda q: 1000 * math.exp(3 * q / FULL)  # noqa: E731
    target = Target("size", 5000, "5000 bytes")
    for estimate in (lambda q: 7, lambda q: 1e6 - q, lambda q: size(FULL - q)):
        q, trials = _corrected(size, estimate, target)
        assert 0.97 * 5000 <= size(q) <= 5000 and trials <= 4 + 12
    quality = lambda q: 1000 if q <= 7500 else 3000  # noqa: E731  a jump the estimate misses
    q, _ = _corrected(quality, lambda q: 1000 + q / 5, Target("size", 2000, "2000 bytes"))
    assert quality(q) == 1000
    q, _ = _corrected(quality, lambda q: 1000 + q / 5, Target("psnr", 2000, "x"))
    assert quality(q) == 3000


def test_a_corrected_search_past_the_ends_gives_the_nearest_miss():
    size = lambda q: 1000 + q  # noqa: E731
    for budget, end in ((500, 0), (20000, FULL)):  # nothing fits; even the best fits
        q, trials = _corrected(size, lambda q: 0.9 * size(q), Target("size", budget, "b"))
        assert q == end and trials <= 2
    for goal, end in ((900, 0), (20000, FULL)):  # even the least reaches; nothing reaches
        q, trials = _corrected(size, lambda q: 1.1 * size(q), Target("psnr", goal, "x"))
        assert q == end and trials <= 2


def test_a_size_target_fits_within_three_percent(hyper, dog):
    top = len(hyper.encode(dog, 100))
    for budget in (int(top * 0.5), int(top * 0.8)):
        enc = hyper.encode_detailed(dog, target_size=budget)
        assert 0.97 * budget <= len(enc.data) <= budget and not enc.notes
        assert container.unpack(enc.data).quality == round(100 * enc.quality)
    pixels = dog.shape[0] * dog.shape[1]
    bpp = 8 * top * 0.6 / pixels
    data = hyper.encode(dog, target_bpp=bpp)
    assert 0.97 * bpp <= 8 * len(data) / pixels <= bpp


def test_a_psnr_target_is_reached_by_at_most_0_3_db(hyper, dog):
    low = psnr(dog, np.asarray(hyper.decode(hyper.encode(dog, 0))))
    high = psnr(dog, np.asarray(hyper.decode(hyper.encode(dog, 100))))
    goal = (low + high) / 2
    enc = hyper.encode_detailed(dog, target_psnr=goal)
    reached = psnr(dog, np.asarray(hyper.decode(enc.data)))
    assert reached == pytest.approx(enc.psnr) and goal <= reached <= goal + 0.3


def test_impossible_targets_write_the_nearest_miss_or_fail_when_strict(hyper, dog):
    enc = hyper.encode_detailed(dog, target_size=50)
    assert enc.quality == 0 and len(enc.data) > 50
    assert "over a size of 50 bytes" in enc.notes[-1]
    enc = hyper.encode_detailed(dog, target_psnr=80)
    assert enc.quality == 100 and "short of a PSNR of 80 dB" in enc.notes[-1]
    with pytest.raises(HvqError, match="quality 0 gives"):
        hyper.encode(dog, target_size=50, strict=True)
    # Past the safe end of the scale the file is written with a note, even when strict.
    top = len(hyper.encode(dog, 100))
    enc = hyper.encode_detailed(dog, target_size=10 * top, strict=True)
    assert len(enc.data) == top and "quality 100 (the highest) gives" in enc.notes[-1]
    enc = hyper.encode_detailed(dog, target_psnr=1, strict=True)
    assert enc.quality == 0 and "quality 0 (the lowest) gives" in enc.notes[-1]


@pytest.mark.slow
def test_a_target_inside_a_rate_jump_lands_on_the_safe_side_with_a_note(dog):
    codec = Codec("hvq-v2")
    below, above = (len(codec.encode(dog, q)) for q in (50, 50.01))  # stage 2 comes in
    enc = codec.encode_detailed(dog, target_size=above - 1)
    assert len(enc.data) == below < 0.97 * (above - 1)
    assert "(the next quality tried is over)" in enc.notes[-1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target_size": 1000, "target_psnr": 30}, "mutually exclusive"),
        ({"target_bpp": 0.5, "target_size": 1000}, "mutually exclusive"),
        ({"quality": 50, "target_bpp": 0.5}, "a quality or a target"),
        ({"target_size": 0}, "positive"),
        ({"target_bpp": -1}, "positive"),
        ({"target_psnr": float("inf")}, "too large"),
        ({"target_psnr": "high"}, "a number"),
        ({"target_bpp": 1e308}, "too large"),
        ({"target_size": 10**400}, "a number"),
        ({"target_size": 0.5}, "under one byte"),
        ({"target_bpp": 1e-9}, "under one byte"),
        ({"strict": True}, "strict needs a target"),
    ],
)
def test_bad_target_combinations_raise_hvqerror(hyper, dog, kwargs, match):
    with pytest.raises(HvqError, match=match):
        encode(dog, model=hyper, **kwargs)


@pytest.mark.slow
def test_cli_targets_per_file_and_their_errors(tmp_path, hyper, dog):
    weights = tmp_path / "tiny.pt"
    torch.save(tiny_hyper(), weights)
    bpp = round(8 * 0.6 * len(hyper.encode(dog, 100)) / (160 * 272), 3)
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes((IMAGES / "dog.png").read_bytes())
    run = CliRunner().invoke
    r = run(main, ["compress", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-m",
                   str(weights), "--bpp", str(bpp), "-v"])  # fmt: skip
    assert r.exit_code == 0, r.output
    for name in ("a.hvq", "b.hvq"):
        assert 0.97 * bpp <= 8 * (tmp_path / name).stat().st_size / (160 * 272) <= bpp
    info = run(main, ["info", str(tmp_path / "a.hvq")]).output
    assert "quality " in info and "bpp" in info
    for flags, message in [
        (["-q", "50", "--size", "1000"], "-q and --size are mutually exclusive"),
        (["--bpp", "0.5", "--psnr", "30"], "--bpp and --psnr are mutually exclusive"),
        (["--strict"], "--strict needs a target"),
        (["--size", "0"], "--size"),
        (["--psnr", "-3"], "--psnr"),
        (["--psnr", "nan"], "--psnr"),
        (["--bpp", "inf"], "--bpp"),
    ]:
        r = run(main, ["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "x.hvq"), "-m",
                       str(weights), *flags])  # fmt: skip
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
        assert not (tmp_path / "x.hvq").exists()
    r = run(main, ["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "x.hvq"), "-m",
                   str(weights), "--size", "40", "--strict"])  # fmt: skip
    assert r.exit_code == 1 and "quality 0 gives" in r.output and not (tmp_path / "x.hvq").exists()
    r = run(main, ["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "x.hvq"), "-m",
                   str(weights), "--size", "40"])  # fmt: skip
    assert r.exit_code == 0 and "note:" in r.output and (tmp_path / "x.hvq").exists()


@pytest.mark.slow
def test_the_targets_benchmark_runs_on_one_image(tmp_path):
    from benchmarks import readme, targets

    weights, images = tmp_path / "tiny.pt", tmp_path / "images"
    torch.save(tiny_hyper(), weights)
    images.mkdir()
    (images / "dog.png").write_bytes((IMAGES / "dog.png").read_bytes())
    out = tmp_path / "targets.json"
    targets.main(["--images", str(images), "--out", str(out), "--model", str(weights)])
    summary = json.loads(out.read_text())["summary"]
    assert summary["size 0.25"]["images"] == 1 and summary["median_target_vs_plain"] > 0
    for kind in ("size 0.25", "bpp 1", "psnr 33"):
        assert sum(summary[kind][o] for o in targets.OUTCOMES) == 1
    table = readme.targets_table(json.loads(out.read_text()))
    assert "| `--size 0.25 bpp of bytes` | " in table and "| `--psnr 33` | " in table
