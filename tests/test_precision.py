"""bf16 autocast is chosen only where the hardware has it and it measures faster."""

import math

import pytest
import torch

from hvqcodec import precision

CPU = torch.device("cpu")


@pytest.fixture
def timed(monkeypatch):
    """Count the timings `bf16_pays` runs, with a chosen speedup."""
    calls = []

    def speedup(value: float):
        def fake() -> float:
            calls.append(value)
            return value

        monkeypatch.setattr(precision, "_cpu_speedup", fake)
        return calls

    return speedup


def test_no_bf16_hardware_means_float32_without_timing(monkeypatch, timed):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    calls = timed(10.0)
    assert precision.bf16_pays(CPU) is False
    assert calls == []  # the flags rule it out before any measurement


@pytest.mark.parametrize(
    ("speedup", "pays"),
    [(precision.MARGIN * 1.01, True), (precision.MARGIN * 0.99, False), (0.5, False)],
)
def test_native_bf16_is_used_only_where_it_measures_faster(monkeypatch, timed, speedup, pays):
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    calls = timed(speedup)
    assert precision.bf16_pays(CPU) is pays
    assert calls == [speedup]


def test_a_gpu_with_bf16_is_not_timed(monkeypatch, timed):
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    calls = timed(0.5)
    assert precision.bf16_pays(torch.device("cuda")) is True
    assert calls == []


def test_the_measurement_is_a_ratio_taken_once_and_leaves_the_global_rng_alone():
    precision._cpu_speedup.cache_clear()
    before = torch.get_rng_state()
    first = precision._cpu_speedup()
    assert torch.equal(torch.get_rng_state(), before)
    assert math.isfinite(first) and first > 0
    assert precision._cpu_speedup() == first  # cached: one measurement per process
