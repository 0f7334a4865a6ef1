"""Where bf16 autocast pays: on bf16 hardware, and only where it measures faster there.

Training (`training.hyper`) and the encoder's refinement (`families.hyper.refinement`) run
their convolutions in bf16 where that is faster than float32 on this machine. Without bf16
hardware torch emulates it at many times the cost (on a Zen 3 EPYC, AVX2 only, hvq-v3's
training step took 16.1 s in bf16 against 1.7 s in float32:
`benchmarks/results/training/train_step-avx2.json`). Having the instructions is not enough
either: on an Intel Xeon (family 6 model 207) with AVX-512 bf16 but no AMX exposed, hvq-v4's
step took 1.62 s in bf16 against 0.86 s in float32 (`train_step-xeon-avx512bf16.json`), where
a Zen 4 EPYC with the same flags ran bf16 1.8 to 2.8 times faster. So the flags only rule bf16
out; where they allow it, `bf16_pays` times a convolution both ways once per process.
"""

import functools
import time

import torch
from torch.nn.functional import conv2d

# bf16 must beat float32 by this factor to be chosen, so that a machine where the two are
# close does not flip between runs on timing noise (the machines measured differ by 1.8x+).
MARGIN = 1.25


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs on bf16 hardware: a GPU that has it, or a CPU with AVX-512
    bf16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return True


def bf16_pays(device: torch.device) -> bool:
    """Whether bf16 autocast is worth using on `device`: native there and, on a CPU, at least
    `MARGIN` times faster than float32 for a training-sized convolution, forward and backward
    (measured once per process, in about a second)."""
    if not native_bf16(device):
        return False
    return device.type != "cpu" or _cpu_speedup() >= MARGIN


@functools.cache
def _cpu_speedup() -> float:
    """float32's time over bf16's for a 3x3 convolution of 128 channels on 2 x 48 x 48
    channels_last, forward and backward: the best of 6 runs each, interleaved (the first warms
    up)."""
    # Its own generator, not a module's initialisation: the measurement must not move the
    # global RNG that training draws from.
    generator = torch.Generator().manual_seed(0)
    weight, x = (
        torch.randn(shape, generator=generator).to(memory_format=torch.channels_last)
        for shape in ((128, 128, 3, 3), (2, 128, 48, 48))
    )
    weight, x = (weight / 32).requires_grad_(), x.requires_grad_()

    def seconds(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = conv2d(conv2d(x, weight, padding=1), weight, padding=1)
        out.float().square().mean().backward()
        return time.perf_counter() - start

    best = {False: float("inf"), True: float("inf")}
    for _ in range(6):
        for bf16 in best:
            best[bf16] = min(best[bf16], seconds(bf16))
    return best[False] / best[True]
