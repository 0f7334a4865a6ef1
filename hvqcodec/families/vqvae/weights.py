"""The VQ-VAE family's weights file, `hvqcodec-weights/1`:

    {"format": "hvqcodec-weights/1", "name": str, "vqvae_config": dict, "prior_config": dict,
     "vqvae": state_dict, "prior": state_dict}

Float tensors are stored as float16 and widened to float32 on load (`hvqcodec.storage`).
"""

from pathlib import Path

import torch

from hvqcodec.errors import HvqError
from hvqcodec.families.vqvae.integer import IntegerPrior
from hvqcodec.families.vqvae.model import HierarchicalVQVAE, VQVAEConfig
from hvqcodec.families.vqvae.pipeline import VQVAEModel
from hvqcodec.families.vqvae.prior import HierarchicalPrior
from hvqcodec.priors import PriorConfig
from hvqcodec.storage import cast, fingerprint

WEIGHTS_FORMAT = "hvqcodec-weights/1"


def model_id(weights: dict) -> int:
    """The fingerprint of both configs, then every tensor of the autoencoder and the prior."""
    configs = [weights["vqvae_config"], weights["prior_config"]]
    return fingerprint(configs, weights["vqvae"], weights["prior"])


def pack_weights(name: str, vqvae: HierarchicalVQVAE, prior: HierarchicalPrior) -> dict:
    return {
        "format": WEIGHTS_FORMAT,
        "name": name,
        "vqvae_config": vqvae.config.to_dict(),
        "prior_config": prior.config.to_dict(),
        "vqvae": cast(vqvae.state_dict(), torch.float16),
        "prior": cast(prior.state_dict(), torch.float16),
    }


def save_weights(path: str | Path, name: str, vqvae: HierarchicalVQVAE, prior: HierarchicalPrior):
    torch.save(pack_weights(name, vqvae, prior), path)


def keep_stages(weights: dict, stages: int) -> dict:
    """The weights with only the first `stages` bottom stages: a model for the lower rates.
    Nothing before a stage depends on it, so what remains is unchanged."""
    have = weights["vqvae_config"].get("bottom_stages", 1)
    if not 1 <= stages <= have:
        raise HvqError(f"cannot keep {stages} of {have} bottom stages")
    dropped = [f"bottom{s}" for s in range(stages + 1, have + 1)]

    def keep(state: dict, prefix: str) -> dict:
        return {k: v for k, v in state.items() if k.split(".")[1] not in dropped
                or not k.startswith(prefix)}  # fmt: skip

    return {
        **weights,
        "vqvae_config": {**weights["vqvae_config"], "bottom_stages": stages},
        "vqvae": keep(weights["vqvae"], "quantizers."),
        "prior": keep(weights["prior"], "levels."),
    }


def build(weights: dict) -> VQVAEModel:
    """The loaded model of a weights dict of this format."""
    try:
        vq_cfg = VQVAEConfig.from_dict(weights["vqvae_config"])
        vqvae = HierarchicalVQVAE(vq_cfg)
        prior = HierarchicalPrior(PriorConfig.from_dict(weights["prior_config"]), vq_cfg)
        vqvae.load_state_dict(cast(weights["vqvae"], torch.float32))
        prior.load_state_dict(cast(weights["prior"], torch.float32))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise HvqError(f"weights file is corrupt or incompatible: {e}") from None
    vqvae.eval()
    prior.eval()
    name = str(weights.get("name", "?"))
    return VQVAEModel(name, model_id(weights), vqvae, prior, IntegerPrior(prior))
