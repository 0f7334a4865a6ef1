"""Encoder effort (`hvqcodec.refinement`): refined symbols lower the loss they are refined on,
in one tile or many, and so do real files; files stay exact and reproducible; bad efforts and
models without fine symbols are refused."""

import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from hvqcodec import Codec, HvqError, entropy_models
from hvqcodec.cli import main
from hvqcodec.families.hyper import pipeline, refinement
from hvqcodec.rate_control import FULL

QUALITY = 6000  # hundredths


@pytest.fixture(scope="module")
def codec(tiny_hyper_codec) -> Codec:
    return tiny_hyper_codec


def lam(codec: Codec, quality: int = QUALITY) -> float:
    lambdas = codec.model.net.lambdas
    return refinement.lambda_at(lambdas, quality * (len(lambdas) - 1) / FULL)


def file_loss(codec: Codec, rgb: np.ndarray, data: bytes) -> float:
    """The trained loss of a real file: lambda * MSE of its decoded pixels + its bits/pixel."""
    decoded = np.asarray(codec.decode(data), dtype=np.float64) / 255
    mse = float(np.mean((decoded - rgb / 255) ** 2))
    return lam(codec) * mse + 8 * len(data) / (rgb.shape[0] * rgb.shape[1])


@pytest.mark.slow
@pytest.mark.parametrize("tile", [refinement.TILE, 4])
def test_refined_symbols_lower_the_loss_in_one_tile_or_many(shipped_codec, dog, tile):
    """With the shipped model (a random one's synthesis barely responds to its latent)."""
    model = shipped_codec.model
    encoder = model.encoder(dog)
    level = pipeline.FineLevel(model, encoder.mean, encoder.log_scale, QUALITY)
    mean_g, indices = level.mean_g(), level.indices()
    centred = encoder.y * level.gain - mean_g
    log_scale = refinement.table_log_scales(torch.from_numpy(indices))
    if tile == 4:
        assert encoder.y.shape[-1] > 2 * tile  # several tiles, each inside a frame

    def loss(symbols: torch.Tensor) -> float:
        symbols = torch.round(symbols)
        latent = level.latent(symbols.numpy().astype(np.int32))
        pixels = pipeline.synthesis(model, latent, encoder.shapes["fine"], *dog.shape[:2], QUALITY)
        pixels = pixels.astype(np.float64) / 255
        bits = float(entropy_models.bits(symbols, log_scale).sum())
        return (
            lam(shipped_codec) * float(np.mean((pixels - dog / 255) ** 2)) + bits / dog[..., 0].size
        )

    with torch.enable_grad():
        refined = refinement.refine(model.synthesis_at(QUALITY), encoder.image, centred, mean_g,
                                    level.inverse, log_scale, lam(shipped_codec), 20,
                                    tile=tile)  # fmt: skip
    assert refined.shape == centred.shape and torch.isfinite(refined).all()
    assert loss(refined) < 0.97 * loss(centred)  # measured: 6% lower in one tile, 5% in many


@pytest.mark.slow
def test_effort_lowers_the_loss_of_real_files(shipped_codec, dog):
    plain = shipped_codec.encode(dog, QUALITY / 100)
    refined = shipped_codec.encode(dog, QUALITY / 100, effort=1)
    assert file_loss(shipped_codec, dog, refined) < 0.97 * file_loss(shipped_codec, dog, plain)


@pytest.mark.slow
def test_effort_gives_exact_reproducible_files(codec, dog):
    first = codec.encode_detailed(dog, QUALITY / 100, effort=1)
    assert first.data == codec.encode(dog, QUALITY / 100, effort=1)  # SGA's draws are seeded
    decoded = codec.decode_detailed(first.data)
    for name, codes in first.codes.items():
        np.testing.assert_array_equal(decoded.codes[name], codes)


@pytest.mark.slow
def test_effort_works_with_a_target_and_through_pillow(codec, dog, monkeypatch):
    budget = len(codec.encode(dog, 50))
    enc = codec.encode_detailed(dog, target_size=budget, effort=1)
    assert len(enc.data) <= budget or enc.notes
    monkeypatch.setattr("hvqcodec.codec.shipped_codec", lambda name=None: codec)
    buf = io.BytesIO()
    Image.fromarray(dog).save(buf, format="HVQ", quality=QUALITY / 100, effort=1)
    assert buf.getvalue() == codec.encode(dog, QUALITY / 100, effort=1)


@pytest.mark.parametrize("effort", [-1, 4, 1.5, "2", True, None])
def test_bad_efforts_are_refused(codec, dog, effort):
    with pytest.raises(HvqError, match="effort"):
        codec.encode(dog, effort=effort)


def test_models_without_fine_symbols_refuse_effort(tiny_codec, dog):
    with pytest.raises(HvqError, match="effort above 0 needs an hvq-v3 model"):
        tiny_codec.encode(dog, effort=1)
    assert tiny_codec.encode(dog, effort=0) == tiny_codec.encode(dog)


def test_cli_effort_range(tmp_path, dog):
    Image.fromarray(dog).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["compress", "-e", "4", str(tmp_path / "a.png")])
    assert r.exit_code == 2 and "effort" in r.output.lower()
    assert not (tmp_path / "a.hvq").exists()
