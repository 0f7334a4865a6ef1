"""Grow a trained hvq-v3 family model into a larger configuration without changing what it
computes, so that a new design starts from what the old one learned.

After Chen, Goodfellow, Shlens, "Net2Net: Accelerating Learning via Knowledge Transfer", ICLR
2016 (function-preserving growth). What may grow, and how each part starts:

- more fine-latent channels (`latent`): the analysis computes them with zero weights, so
  their symbols are 0, at a zero mean and the smallest scale: they cost almost no bits and
  the pixels and the VQ codes stay as they were. The synthesis reads them with fresh weights,
  which pass the gradient back to the analysis (a zero on both sides would never learn), and
  the hyper analysis with zero weights;
- residual blocks at stride 8 (`analysis_blocks`, `synthesis_blocks`): appended as identities
  (`transforms.identity_blocks`);
- more rate points (`lambdas`, the old ones first): each new gain vector extrapolates the last
  two, geometrically, as they were trained;
- a context model (`context_groups`): its corrections start at zero (`context`);
- a checkerboard inside a context model's groups (`context_checkerboard`, the groups and
  widths kept): each network reads the group's anchors with zero weights, and group 0's new
  network starts at zero;
- rate modulation of the synthesis (`synthesis_modulation`): every rate point's scales start
  at 1 and its shifts at 0. A modulated model's new rate points start as its last one.

Everything else (widths, codebooks, priors) must be the same.
"""

import math

import torch

from hvqcodec.entropy_models import SCALE_MIN
from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig

GROWABLE = ("latent", "analysis_blocks", "synthesis_blocks", "lambdas", "context_groups",
            "context_channels", "context_checkerboard", "synthesis_modulation")  # fmt: skip


def _check(old: VQHyperpriorConfig, new: VQHyperpriorConfig) -> None:
    fixed = {k: v for k, v in old.to_dict().items() if k not in GROWABLE}
    changed = [k for k, v in fixed.items() if new.to_dict()[k] != v]
    if changed:
        raise ValueError(f"growth keeps {', '.join(changed)} as they are")
    if new.latent < old.latent or new.analysis_blocks < old.analysis_blocks:
        raise ValueError("growth adds latent channels and blocks, never removes them")
    if new.synthesis_blocks < old.synthesis_blocks:
        raise ValueError("growth adds blocks, never removes them")
    if old.synthesis_modulation > new.synthesis_modulation:
        raise ValueError("growth adds rate modulation, never removes it")
    if old.context_groups and (
        (new.context_groups, new.context_channels) != (old.context_groups, old.context_channels)
        or new.latent != old.latent
        or old.context_checkerboard > new.context_checkerboard
    ):
        raise ValueError(
            "growth adds a context model or a checkerboard to one, never removes or reshapes them"
        )
    if tuple(new.lambdas[: len(old.lambdas)]) != tuple(old.lambdas):
        raise ValueError("the grown model's lambdas must start with the old model's")


def _key(key: str, old: VQHyperpriorConfig, new: VQHyperpriorConfig) -> str:
    """Where a parameter of the old model sits in the grown one: the blocks are inserted before
    the analysis' last layer and after the synthesis' first layer and activation."""
    part, rest = key.split(".", 1)
    if part == "context":  # context.nets.<i>...: a checkerboard puts group 0's network first
        _, index, rest = rest.split(".", 2)
        shift = int(new.context_checkerboard and not old.context_checkerboard)
        return f"context.nets.{int(index) + shift}.{rest}"
    if part not in ("analysis", "synthesis"):
        return key
    index, rest = rest.split(".", 1)
    index = int(index)
    if part == "analysis":
        layers = 7 + int(old.attention) + old.analysis_blocks  # the last one is the 5x5 down
        shift = new.analysis_blocks - old.analysis_blocks if index == layers - 1 else 0
    else:
        shift = (
            new.synthesis_blocks - old.synthesis_blocks if index >= 2 + old.synthesis_blocks else 0
        )
    return f"{part}.{index + shift}.{rest}"


@torch.no_grad()
def grow(old: VQHyperprior, config: VQHyperpriorConfig) -> VQHyperprior:
    """A model of `config` that decodes as `old` does at old's rate points (new channels cost
    a small fraction of a bit per symbol)."""
    _check(old.config, config)
    new = VQHyperprior(config)
    m0, m1 = old.config.latent, config.latent
    state = new.state_dict()
    first_analysis = f"analysis.{len(new.analysis) - 1}."
    for key, value in old.state_dict().items():
        target = state[_key(key, old.config, config)]
        if key.startswith("gains."):
            continue
        if key.startswith("hyper_synthesis.at16.3."):  # (mean, log-scale) of every channel
            target.zero_()
            if key.endswith("bias"):  # new symbols at the smallest scale: near 0 bits each
                target[m1 + m0 :] = math.log(SCALE_MIN) - 4  # with any gain
            target[:m0], target[m1 : m1 + m0] = value[:m0], value[m0:]
            continue
        if key.startswith("context.") and key.endswith(".0.weight") and target.shape != value.shape:
            size = target.shape[1] - value.shape[1]  # the group's own anchors, zero weights
            before = value.shape[1] - 2 * size  # channels of the groups before it
            target.zero_()
            target[:, :before], target[:, before + size :] = value[:, :before], value[:, before:]
            continue
        if _key(key, old.config, config).startswith(first_analysis):
            target.zero_()  # new channels are 0
        elif key.startswith("hyper_analysis.to32.0."):
            target.zero_()  # the VQ codes ignore the new channels
        target[tuple(slice(0, n) for n in value.shape)] = value
        if key.startswith("modulation."):  # (rate points, channels)
            target[len(value) :] = value[-1]
    for name in ("log_gains", "log_inverses"):
        table = getattr(old.gains, name)
        grown = state[f"gains.{name}"]
        grown[: len(table), :m0] = table
        grown[: len(table), m0:] = table.mean(1, keepdim=True)
        for i in range(len(table), len(grown)):
            grown[i] = 2 * grown[i - 1] - grown[i - 2]
    new.load_state_dict(state)
    return new
