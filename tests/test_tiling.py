"""Tiled full-resolution layers give the numbers of one pass over the whole image."""

import pytest
import torch

from hvqcodec.families.vqvae.model import LEVELS
from hvqcodec.layers.tiling import tiled
from tests.conftest import tiny_model


def run(vqvae, x, tile):
    vqvae.tile_pixels = tile
    with torch.no_grad():
        codes = vqvae.encode(x)
        return vqvae.features(x)["bottom"], codes, vqvae.decode(codes)


@pytest.mark.slow
def test_tiled_encoder_equals_untiled_bit_for_bit_and_decoder_to_the_last_bit_or_two():
    vqvae = tiny_model().vqvae
    x = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(0))
    whole = run(vqvae, x, 4096)
    for tile in (32, 64):
        feats, codes, image = run(vqvae, x, tile)
        assert torch.equal(feats, whole[0])
        for name in LEVELS:
            assert torch.equal(codes[name], whole[1][name])
        # On an AVX2-only CPU (Zen 3) oneDNN's transposed convolutions round a tile's pixels
        # differently from the whole map's, by an ulp on 0.6% of them; tiles without a halo
        # are off by over 1e-2.
        torch.testing.assert_close(image, whole[2], rtol=4 * torch.finfo().eps, atol=0)


def test_the_halo_is_what_makes_tiles_exact():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        whole = conv(x)
        assert torch.equal(tiled(conv, x, scale=1, tile=16, halo=1), whole)
        assert not torch.equal(tiled(conv, x, scale=1, tile=16, halo=0), whole)
