"""Growing a trained hvq-v3 family model: more latent channels, blocks, rate points and a
context model, with what it computes unchanged."""

import pytest
import torch

from hvqcodec.families.hyper.growth import grow
from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig
from hvqcodec.families.hyper.weights import pack_weights
from hvqcodec.models import build_model
from tests.conftest import TINY_HYPER

BIGGER = {"latent": 24, "analysis_blocks": 1, "synthesis_blocks": 2,
          "context_groups": (4, 4, 16)}  # fmt: skip


def trained_like(seed: int = 0) -> VQHyperprior:
    """A tiny model whose every weight is nonzero, as a trained one's are."""
    torch.manual_seed(seed)
    net = VQHyperprior(VQHyperpriorConfig(**TINY_HYPER))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 128, 128)


def test_a_grown_model_reconstructs_as_the_old_one_at_its_rate_points(images):
    old = trained_like()
    lambdas = old.config.lambdas + (1.0,)
    config = VQHyperpriorConfig(**{**TINY_HYPER, **BIGGER, "lambdas": lambdas})
    new = grow(old, config).eval()
    assert new.context is not None and len(new.lambdas) == len(old.lambdas) + 1
    with torch.no_grad():
        for r in range(len(old.lambdas)):
            index = torch.full((len(images),), float(r))
            a, b = old(images, index), new(images, index)
            for name in ("top", "middle"):
                assert torch.equal(a.indices[name], b.indices[name])
            torch.testing.assert_close(b.reconstruction, a.reconstruction, atol=1e-5, rtol=0)
            # The new channels' symbols sit at the smallest scale: a few bits at most.
            extra = (b.bits["fine"] - a.bits["fine"]) / (128 * 128)
            assert (extra.abs() < 0.01).all(), extra
        top = new(images, torch.full((2,), float(len(lambdas) - 1)))
        assert torch.isfinite(top.reconstruction).all()


def test_the_grown_parts_learn(images):
    """New channels, blocks and context start inert but not dead: each gets a gradient."""
    config = VQHyperpriorConfig(**{**TINY_HYPER, **BIGGER})
    new = grow(trained_like(), config).train()
    out = new(images, torch.tensor([1.0, 4.0]))
    loss = (out.reconstruction - images).pow(2).mean() * 100 + sum(out.bits.values()).mean()
    loss.backward()
    grads = {
        "new analysis outputs": new.analysis[-1].weight.grad[16:],
        "a synthesis block": new.synthesis[3].body[3].weight.grad,
        "an analysis block": new.analysis[7].body[3].weight.grad,
        "the context": new.context.nets[-1][-1].weight.grad,
    }
    for what, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0, what


@pytest.mark.parametrize(
    "change", [{"channels": 8}, {"latent": 8}, {"lambdas": (0.1, 0.2)}, {"codebook_sizes": (8, 8)}]
)
def test_growth_refuses_what_it_cannot_preserve(change):
    with pytest.raises(ValueError):
        grow(trained_like(), VQHyperpriorConfig(**{**TINY_HYPER, **change}))


def test_the_codec_codes_a_grown_model_with_blocks_and_a_context(dog):
    from hvqcodec import Codec

    for change in ({"latent": 24, "synthesis_blocks": 1}, BIGGER):
        config = VQHyperpriorConfig(**{**TINY_HYPER, **change})
        codec = Codec(build_model(pack_weights("grown", grow(trained_like(), config))))
        enc = codec.encode_detailed(dog, 60)
        assert (codec.decode_detailed(enc.data).codes["fine"] == enc.codes["fine"]).all()
