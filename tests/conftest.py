from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hvqcodec import Codec
from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig
from hvqcodec.families.hyper.weights import pack_weights as pack_hyper_weights
from hvqcodec.families.vqvae.model import HierarchicalVQVAE, VQVAEConfig
from hvqcodec.families.vqvae.prior import HierarchicalPrior
from hvqcodec.families.vqvae.weights import pack_weights
from hvqcodec.models import build_model
from hvqcodec.priors import PriorConfig

IMAGES = Path(__file__).parent / "images"


def assert_same_up_to_rounding(got, expected) -> None:
    """The same pixels up to the float rounding of a decoder network, which can differ across
    CPUs and, for hvq-v1 and hvq-v2 on some (oneDNN's kernels), thread counts: a flip moves a
    pixel by one level, a changed model or code most of them by more."""
    got, expected = np.asarray(got).astype(int), np.asarray(expected).astype(int)
    assert got.shape == expected.shape
    diff = np.abs(got - expected)
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


TINY_VQ = {"code_dim": 8, "channels": 16, "decoder_channels": (8, 8), "res_blocks": 1}
TINY_PRIOR = {"embed_dim": 4, "hidden": 8, "cond_blocks": 1, "kernel": 5}


def round_trip(codec: Codec, rgb: np.ndarray, quality: float):
    """(encoded, decoded) of `rgb` at `quality`, checked: the decoder reads the codes the
    encoder wrote, and gives the pixels the encoder reconstructs for them (hvq-v3 family)."""
    enc = codec.encode_detailed(rgb, quality)
    dec = codec.decode_detailed(enc.data)
    for name, codes in enc.codes.items():
        np.testing.assert_array_equal(dec.codes[name], codes)
    encoder = codec.model.encoder(rgb)
    assert np.array_equal(
        encoder.reconstruct(encoder.streams(enc.hundredths)), np.asarray(dec.image)
    )
    return enc, dec


def tiny_model(seed: int = 0, name: str = "tiny", prior: dict | None = None, **vq):
    """A randomly initialised model with the real architecture at a fraction of the width."""
    torch.manual_seed(seed)
    vq_cfg = VQVAEConfig(**{**TINY_VQ, **vq})
    vqvae = HierarchicalVQVAE(vq_cfg)
    priors = HierarchicalPrior(PriorConfig(**(prior or TINY_PRIOR)), vq_cfg)
    return build_model(pack_weights(name, vqvae, priors))


TINY_HYPER = {"channels": 16, "latent": 16, "hyper_channels": 16, "code_dim": 4,
              "codebook_sizes": (16, 16), "prior": TINY_PRIOR}  # fmt: skip


def tiny_hyper(**config) -> dict:
    """The weights of a randomly initialised hvq-v3 family model at a fraction of the width.
    With `context_groups`, its context model's corrections are nonzero, as a trained one's."""
    torch.manual_seed(0)
    net = VQHyperprior(VQHyperpriorConfig(**{**TINY_HYPER, **config}))
    if net.context is not None:
        with torch.no_grad():
            for group in net.context.nets:
                group[-1].weight.normal_(std=0.05)
                group[-1].bias.normal_(std=0.05)
    return pack_hyper_weights("tiny-v3", net)


@pytest.fixture(scope="session")
def tiny_hyper_codec() -> Codec:
    return Codec(build_model(tiny_hyper()))


@pytest.fixture(scope="session")
def tiny_codec() -> Codec:
    return Codec(tiny_model())


@pytest.fixture(scope="session")
def staged_codec() -> Codec:
    """Three bottom stages: three qualities."""
    return Codec(tiny_model(name="staged", bottom_stages=3, stage_codebook_size=16))


@pytest.fixture(scope="session")
def wide_prior_codec() -> Codec:
    """Priors at the shipped width, big enough for torch to split their maths across threads."""
    return Codec(tiny_model(prior=PriorConfig().to_dict(), name="wide-prior"))


@pytest.fixture(scope="session")
def shipped_codec() -> Codec:
    return Codec()


@pytest.fixture(scope="session")
def dog() -> np.ndarray:
    return np.asarray(Image.open(IMAGES / "dog.png").convert("RGB"))
