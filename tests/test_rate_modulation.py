"""A synthesis modulated per rate point (`hvqcodec.layers.modulation`): trained with each
sample's rate, decoded with the modulation folded into the upsamplings at the file's quality."""

import numpy as np
import pytest
import torch

from hvqcodec import Codec
from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig
from hvqcodec.families.hyper.weights import pack_weights
from hvqcodec.models import build_model
from hvqcodec.rate_control import FULL
from tests.conftest import TINY_HYPER, round_trip


def modulated(seed: int = 0, *, trained: bool = True) -> VQHyperprior:
    """A tiny modulated model; `trained`: its scales and shifts no longer the identity."""
    torch.manual_seed(seed)
    net = VQHyperprior(VQHyperpriorConfig(**TINY_HYPER, synthesis_modulation=True))
    if trained:
        with torch.no_grad():
            for p in net.modulation.parameters():
                p.normal_(std=0.3)
    return net.eval()


def test_the_decoders_synthesis_is_the_trained_one_at_every_quality():
    net = modulated()
    points = len(net.config.lambdas)
    assert len(net.modulation) == 3
    y = torch.randn(1, net.config.latent, 4, 6)
    with torch.no_grad():
        outputs = []
        for hundredths in (0, 2500, 3100, FULL):
            rate_index = torch.tensor([hundredths * (points - 1) / FULL])
            folded = net.synthesis_at(hundredths)(y)
            torch.testing.assert_close(folded, net.synthesize(y, rate_index), atol=2e-5, rtol=1e-5)
            outputs.append(folded)
        assert not torch.allclose(outputs[0], outputs[-1], atol=1e-3)
        plain = VQHyperprior(VQHyperpriorConfig(**TINY_HYPER))
        assert plain.synthesis_at(FULL) is plain.synthesis  # nothing to fold, nothing copied


@pytest.fixture(scope="module")
def codecs() -> tuple[Codec, Codec]:
    """The same weights with the modulation trained and at the identity."""
    net = modulated()
    identity = modulated(trained=False)
    identity.load_state_dict(
        {
            k: v if k.startswith("modulation.") else net.state_dict()[k]
            for k, v in identity.state_dict().items()
        }  # fmt: skip
    )
    return tuple(Codec(build_model(pack_weights("tiny-mod", n))) for n in (net, identity))


def test_a_modulated_file_decodes_its_codes_and_the_encoders_pixels(codecs, dog):
    codec, identity = codecs
    for q in (0, 45, 100):
        enc, dec = round_trip(codec, dog, q)
        # The modulation changes the pixels of the same codes, nothing else.
        other = identity.encode_detailed(dog, q)
        for name, codes in enc.codes.items():
            np.testing.assert_array_equal(other.codes[name], codes)
        assert not np.array_equal(np.asarray(identity.decode(other.data)), np.asarray(dec.image))
    assert codec.decode(codec.encode(dog, 30), preview=True).size == (160, 272)
    # Folded once per quality, however many times an encoder runs the synthesis.
    assert codec.model.synthesis_at(4500) is codec.model.synthesis_at(4500)
