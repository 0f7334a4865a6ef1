"""Where bf16 autocast pays: on bf16 hardware only.

Training (`training.hyper`) and the encoder's refinement (`families.hyper.refinement`) run
their convolutions in bf16 where the processor computes it natively; elsewhere torch emulates
it at many times the cost of float32 (on a Zen 3 EPYC, AVX2 only, hvq-v3's training step took
16.1 s in bf16 against 1.7 s in float32: `benchmarks/results/training/train_step-avx2.json`), so
they stay in float32. Having the instructions is not always enough: on an Intel Xeon (family 6
model 207) with AVX-512 bf16 but no AMX exposed, hvq-v4's step took 1.62 s in bf16 against
0.86 s in float32 (`train_step-xeon-avx512bf16.json`), where a Zen 4 EPYC ran bf16 faster; the
trainer's `--bf16 False` is for such machines, and `benchmarks.train_step` tells which it is.
"""

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs on bf16 hardware: a GPU that has it, or a CPU with AVX-512
    bf16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return True
