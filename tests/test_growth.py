"""Growing a trained hvq-v3 family model: more latent channels, blocks, rate points, a
context model and rate modulation, with what it computes unchanged."""

import copy

import pytest
import torch

from hvqcodec.families.hyper.growth import grow
from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig
from hvqcodec.families.hyper.weights import pack_weights
from hvqcodec.models import build_model
from tests.conftest import TINY_HYPER

BIGGER = {"latent": 24, "analysis_blocks": 1, "synthesis_blocks": 2,
          "context_groups": (4, 4, 16), "synthesis_modulation": True}  # fmt: skip


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
        "the rate modulation": new.modulation[2].shifts.grad[[1, 4]],  # the samples' rates
    }
    for what, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0, what


def test_a_checkerboard_grows_into_a_trained_context_with_its_function_unchanged(images):
    old = grow(trained_like(), VQHyperpriorConfig(**{**TINY_HYPER, **BIGGER})).eval()
    with torch.no_grad():
        for p in old.context.parameters():  # a trained context: nonzero corrections
            p.add_(0.01 * torch.randn_like(p))
    config = VQHyperpriorConfig(**{**old.config.to_dict(), "context_checkerboard": True})
    new = grow(old, config).eval()
    assert len(new.context.nets) == len(old.context.nets) + 1
    learner = copy.deepcopy(new).train()  # (training moves the codebooks)
    out = learner(images, torch.tensor([1.0, 4.0]))
    (out.reconstruction.pow(2).mean() + out.bits["fine"].mean()).backward()
    # Inert but not dead: group 0's new network and the anchors' weights learn.
    assert learner.context.nets[0][-1].weight.grad.abs().sum() > 0
    assert learner.context.nets[1][0].weight.grad[:, 4:8].abs().sum() > 0  # group 1's anchors
    with torch.no_grad():
        for r in range(len(old.lambdas)):
            index = torch.full((len(images),), float(r))
            a, b = old(images, index), new(images, index)
            torch.testing.assert_close(b.bits["fine"], a.bits["fine"], atol=1e-3, rtol=1e-5)
            torch.testing.assert_close(b.reconstruction, a.reconstruction, atol=1e-5, rtol=0)
    # Once trained, the anchors' input changes the other positions' bits.
    with torch.no_grad():
        for net in new.context.nets:
            net[0].weight.add_(0.05 * torch.randn_like(net[0].weight))
            net[-1].weight.add_(0.05 * torch.randn_like(net[-1].weight))
        index = torch.ones(len(images))
        assert not torch.allclose(new(images, index).bits["fine"], old(images, index).bits["fine"])
    with pytest.raises(ValueError):  # and never goes away again
        grow(new, old.config)


def test_a_checkerboard_group_codes_its_anchors_without_its_own_symbols():
    """The anchors' mean and scale do not depend on the group's own latent, and the other
    positions' only on the group's anchors: what a decoder has when it needs them."""
    torch.manual_seed(2)
    config = {**TINY_HYPER, **BIGGER, "context_checkerboard": True}
    net = VQHyperprior(VQHyperpriorConfig(**config)).eval()
    with torch.no_grad():
        for p in net.context.parameters():
            p.add_(0.05 * torch.randn_like(p))
    y, mean, log_scale = (torch.randn(1, 24, 6, 6) for _ in range(3))
    rate = torch.tensor([2.0])
    seen = []
    refine = net.context.refine

    def spy(k, before, m, s, anchors=None):
        out = refine(k, before, m, s, anchors)
        seen.append((k, anchors is None, out[0]))
        return out

    net.context.refine = spy
    net.fine_level(y, mean, log_scale, rate)
    first = list(seen)
    seen.clear()
    changed = y.clone()
    changed[:, :4, 0, 1] += 5  # group 0's latent at a position that is not an anchor
    net.fine_level(changed, mean, log_scale, rate)
    for (k, _, m), (_, _, m2) in zip(first, seen, strict=True):
        if k == 0:  # nothing of group 0 depends on its own other positions
            torch.testing.assert_close(m2, m)
        else:  # the later groups see them decoded
            assert not torch.equal(m2, m), k
    changed = y.clone()
    changed[:, :4, 0, 0] += 5  # an anchor of group 0: its neighbours' pass sees it
    seen.clear()
    net.fine_level(changed, mean, log_scale, rate)
    anchors_pass, other_pass = seen[0][2], seen[1][2]
    torch.testing.assert_close(anchors_pass, first[0][2])
    assert not torch.equal(other_pass[..., 0, 1], first[1][2][..., 0, 1])


def test_a_modulated_model_grows_its_rate_points_from_its_last_one():
    old = grow(trained_like(), VQHyperpriorConfig(**{**TINY_HYPER, **BIGGER}))
    with torch.no_grad():
        for p in old.modulation.parameters():
            p.normal_()
    config = VQHyperpriorConfig(**{**old.config.to_dict(), "lambdas": old.config.lambdas + (1.0,)})
    new = grow(old, config)
    for a, b in zip(old.modulation.parameters(), new.modulation.parameters(), strict=True):
        assert torch.equal(b[:-1], a) and torch.equal(b[-1], a[-1])
    with pytest.raises(ValueError, match="modulation"):
        grow(new, VQHyperpriorConfig(**{**new.config.to_dict(), "synthesis_modulation": False}))


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
