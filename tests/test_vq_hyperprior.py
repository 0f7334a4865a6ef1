"""hvq-v3's parts at a tiny width: the model, its entropy model, gains, GDN, and the trainer."""

import json
import math

import pytest
import torch
from PIL import Image

from hvqcodec import Codec, entropy_models, storage
from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig
from hvqcodec.layers.gain import GainUnits
from hvqcodec.layers.gdn import GDN
from hvqcodec.training import main as train_main  # the default family: hvq-v3's
from tests.conftest import IMAGES, TINY_PRIOR

TINY = {"channels": 8, "latent": 8, "hyper_channels": 8, "code_dim": 4,
        "codebook_sizes": (8, 8), "lambdas": (0.001, 0.01), "prior": TINY_PRIOR}  # fmt: skip


@pytest.mark.parametrize("activation", ["gdn", "gdn1", "relu"])
def test_the_model_trains_at_every_quality_and_measures_its_rate(activation):
    torch.manual_seed(0)
    model = VQHyperprior(VQHyperpriorConfig(**{**TINY, "activation": activation}))
    x = torch.rand(2, 3, 64, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, torch.tensor([0, 1]))
    assert out.reconstruction.shape == x.shape
    assert set(out.bits) == {"top", "middle", "fine"}
    assert all(b.shape == (2,) and b.dtype == torch.float32 for b in out.bits.values())
    loss = sum(out.bits.values()).mean() + out.reconstruction.float().mean() + out.commit_loss
    loss.backward()
    assert model.gains.log_gains.grad is not None and model.analysis[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        low, high = (model(x, torch.tensor([q, q])).bits["fine"].sum() for q in (0, 1))
    assert high > low  # a larger gain quantizes finer


def test_the_ceiling_is_the_reconstruction_less_its_rounding():
    torch.manual_seed(0)
    model = VQHyperprior(VQHyperpriorConfig(**TINY)).eval()
    x, q = torch.rand(1, 3, 64, 64), torch.tensor([1])
    with torch.no_grad():
        coarse, coarse_ceiling = model(x, q).reconstruction, model.ceiling(x, q)
        model.gains.log_gains.data += 12  # steps of e^-12: rounding all but vanishes
        model.gains.log_inverses.data -= 11  # and the ceiling sees gain * inverse = e
        fine, ceiling = model(x, q).reconstruction, model.ceiling(x, q)
    assert torch.allclose(fine, ceiling, atol=1e-4)
    # at the model's own gains the rounding shows, and the ceiling does not have it
    assert (coarse - coarse_ceiling).abs().max() > 10 * (fine - ceiling).abs().max()


def test_bits_are_the_mass_of_unit_bins_of_a_gaussian():
    for scale in (0.11, 0.7, 5.0, 40.0):
        symbols = torch.arange(-400, 401, dtype=torch.float32)
        p = torch.exp2(-entropy_models.bits(symbols, torch.full_like(symbols, math.log(scale))))
        assert p.sum().item() == pytest.approx(1.0, abs=1e-4)
        # The centre bin of a unit Gaussian: erf(0.5 / sqrt(2)) = 0.38292.
    p0 = torch.exp2(-entropy_models.bits(torch.zeros(1), torch.zeros(1)))
    assert p0.item() == pytest.approx(0.382925, abs=1e-5)


def test_gains_interpolate_between_trained_levels():
    gains = GainUnits(3, 4, low=0.5, high=2.0)
    at = gains.gain(torch.tensor([0.0, 0.5, 1.0, 2.0, 2.7]))[:, :, 0, 0]
    assert at[0].tolist() == pytest.approx([0.5] * 4)
    assert at[2].tolist() == pytest.approx([1.0] * 4) and at[3].tolist() == pytest.approx([2.0] * 4)
    assert at[1].tolist() == pytest.approx([math.sqrt(0.5)] * 4)  # geometric midpoint
    assert at[4].tolist() == pytest.approx([2.0] * 4)  # clamped to the trained range
    assert torch.allclose(gains.inverse(torch.tensor([1.0])), 1 / gains.gain(torch.tensor([1.0])))


@pytest.mark.parametrize("simplified", [False, True])
def test_gdn_normalises_in_float32_under_autocast(simplified):
    torch.manual_seed(0)
    gdn, igdn = GDN(4, simplified=simplified), GDN(4, inverse=True, simplified=simplified)
    x = torch.randn(1, 4, 5, 5)
    gamma = 0.1 * torch.eye(4)  # the initial values
    pool = torch.einsum("ij,bjhw->bihw", gamma, x.abs() if simplified else x * x) + 1
    norm = pool if simplified else pool.sqrt()
    assert torch.allclose(gdn(x), x / norm, atol=1e-5)
    assert torch.allclose(igdn(x), x * norm, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gdn(x.bfloat16()).dtype == torch.bfloat16


def trainer_args(tmp_path) -> list[str]:
    """The trainer's flags for a tiny model on three photos, the third held out."""
    data = tmp_path / "data"
    data.mkdir()
    dog = Image.open(IMAGES / "dog.png")
    for i, angle in enumerate((0, 90, 180)):
        dog.rotate(angle, expand=True).save(data / f"p{i}.png")
    listing = tmp_path / "validation.txt"
    listing.write_text("# held out\np2.png\n")
    return ["--data", str(data), "--crop", "64", "--batch-size", "2", "--log-every", "1",
            "--threads", "1", "--validation", str(listing),
            "--model-json", json.dumps(TINY)]  # fmt: skip


def test_the_trainer_holds_out_validation_photos_resumes_and_hands_on_a_compact_checkpoint(
    tmp_path, monkeypatch
):
    dog = Image.open(IMAGES / "dog.png")
    out, compact = tmp_path / "run", tmp_path / "compact.pt"
    args = trainer_args(tmp_path)
    train_main([*args, "--out", str(out), "--max-steps", "2"])
    train_main([*args, "--out", str(out), "--max-steps", "4", "--compact", str(compact),
                "--lr-scales-json", '{"synthesis.": 2}',
                "--rate-weights-json", "[1, 4]"])  # fmt: skip
    rows = [json.loads(line) for line in open(out / "log.jsonl")]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    val = [r for r in rows if "val_psnr" in r]
    assert [r["step"] for r in val] == [0, 2, 4] and len(val[0]["val_bpp"]) == 2
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    counters = ck["counters"]
    assert counters["last_eval"] == counters["cpu_seconds"] > 0  # the next a full interval on
    groups = ck["optimizer"]["param_groups"]  # resumed into another grouping
    assert [g["scale"] for g in groups] == [2.0, 1.0] and ck["config"]["lr_scales"]
    assert ck["config"]["rate_weights"] == [1.0, 4.0]
    small = torch.load(compact, weights_only=True)
    assert small["step"] == 4 and small["config"]["model"]["latent"] == 8
    assert all(v.dtype != torch.float32 for v in small["model"].values())
    train_main([*args, "--out", str(tmp_path / "next"), "--max-steps", "5",
                "--init-from", str(compact)])  # fmt: skip
    rows = [json.loads(line) for line in open(tmp_path / "next" / "log.jsonl")]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5]  # the log goes on
    # A larger model grows from the checkpoint (`families.hyper.growth`) and trains on.
    bigger = json.dumps({"latent": 12, "synthesis_blocks": 1, "context_groups": [4, 8]})
    train_main([*args, "--out", str(tmp_path / "grown"), "--max-steps", "5",
                "--init-from", str(compact), "--model-json", bigger])  # fmt: skip
    grown = torch.load(tmp_path / "grown" / "checkpoint.pt", weights_only=True)
    assert grown["config"]["model"]["latent"] == 12 and grown["counters"]["step"] == 5
    # The compact checkpoint exports to weights the codec ships: at this width few tensors
    # are large, so int8 is asked of smaller ones.
    monkeypatch.setattr(storage, "INT8_MIN_SIZE", 256)
    train_main(["--init-from", str(compact), "--export", str(tmp_path / "w.pt"), "--name", "t"])
    codec = Codec(str(tmp_path / "w.pt"))
    assert codec.name == "t" and codec.decode(codec.encode(dog)).size == dog.size
    train_main(["--init-from", str(compact), "--export", str(tmp_path / "h.pt"), "--name", "h",
                "--float16"])  # fmt: skip
    int8, half = (torch.load(tmp_path / f, weights_only=True) for f in ("w.pt", "h.pt"))
    assert int8["scales"] and "scales" not in half
    assert {v.dtype for v in half["model"].values()} <= {torch.float16, torch.bool, torch.int64}


def test_the_trainer_validates_and_hands_on_a_moving_average_of_the_weights(tmp_path):
    from hvqcodec.training.hyper import checkpoint_model

    args, out, compact = trainer_args(tmp_path), tmp_path / "run", tmp_path / "compact.pt"
    train_main([*args, "--out", str(out), "--max-steps", "1", "--ema", "0.25"])
    first = torch.load(out / "checkpoint.pt", weights_only=True)
    train_main([*args, "--out", str(out), "--max-steps", "2", "--ema", "0.25",
                "--compact", str(compact)])  # fmt: skip
    second = torch.load(out / "checkpoint.pt", weights_only=True)
    assert int(second["average"]["n_averaged"]) == 2  # the resumed run went on averaging
    names = dict(VQHyperprior(VQHyperpriorConfig(**TINY)).named_parameters())
    for name in names:  # the first step's weights, then 0.25 of them and 0.75 of the second's
        expected = 0.25 * first["model"][name] + 0.75 * second["model"][name]
        assert torch.allclose(second["average"]["module." + name], expected, atol=1e-6), name
    moved = [n for n in names if not torch.equal(first["model"][n], second["model"][n])]
    assert moved
    model, _ = checkpoint_model(out / "checkpoint.pt")  # what --init-from and --export take
    small, _ = checkpoint_model(compact)
    for name, value in model.state_dict().items():
        kept = second["average"]["module." + name] if name in names else second["model"][name]
        assert torch.equal(value, kept), name  # the average's weights, the model's buffers
        stored = value.half().float() if value.is_floating_point() else value  # as kept
        assert torch.equal(small.state_dict()[name], stored), name
    rows = [json.loads(line) for line in open(out / "log.jsonl")]
    assert [r.get("ema") for r in rows if "val_psnr" in r] == [0.25] * 3
    with pytest.raises(SystemExit, match="--ema must be"):
        train_main([*args, "--out", str(tmp_path / "bad"), "--ema", "1"])


@pytest.mark.parametrize("before", [None, {}, {"synthesis.": 2.0}])
def test_a_resumed_optimizer_keeps_each_parameters_state_in_another_grouping(before):
    from hvqcodec.training.hyper import carried_state, param_groups

    torch.manual_seed(0)
    model = VQHyperprior(VQHyperpriorConfig(**TINY))
    params = model.parameters() if before is None else param_groups(model, before)
    first = torch.optim.Adam(params, lr=1e-3)  # None: a checkpoint from before the groups
    x = torch.rand(1, 3, 64, 64)
    out = model(x, torch.tensor([1]))
    (out.reconstruction.square().mean() + sum(b.sum() for b in out.bits.values())).backward()
    first.step()
    scales = {"synthesis.": 4.0, "hyper_analysis.": 0.5}
    second = torch.optim.Adam(param_groups(model, scales), lr=1e-3)
    second.load_state_dict(carried_state(second, first.state_dict(), model))
    assert [g["scale"] for g in second.param_groups] == [4.0, 0.5, 1.0]
    names = dict(model.named_parameters())
    assert all(n.startswith("synthesis.") for n in second.param_groups[0]["names"])
    moved = [p for p in model.parameters() if p in first.state]
    assert moved and len(second.state) == len(first.state)
    for name, p in names.items():
        if p in first.state:
            assert torch.equal(second.state[p]["exp_avg"], first.state[p]["exp_avg"]), name


@pytest.mark.parametrize(
    "flag,bad",
    [("--lr-scales-json", b) for b in ("{context: 4}", "[4]", '{"context.": 0}', '{"c.": "4"}')]
    + [("--rate-weights-json", b) for b in ("[1, 0]", '{"0": 1}', "[true]", "[1,")],
)  # fmt: skip
def test_bad_json_flags_are_a_usage_error(flag, bad, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(["--data", "x", flag, bad])
    assert e.value.code == 2 and flag in capsys.readouterr().err


def test_rate_weights_scale_each_rate_points_loss(tmp_path):
    from copy import deepcopy

    from hvqcodec.training.hyper import RDTrainConfig, Run, step

    torch.manual_seed(0)
    model = VQHyperprior(VQHyperpriorConfig(**TINY))
    x, rate_index = torch.rand(2, 3, 64, 64), torch.tensor([0, 1])

    def loss(weights):  # the loss less the commitment, each from the same model and noise
        net = deepcopy(model)
        torch.manual_seed(1)
        total, out = step(net, torch.optim.Adam(net.parameters()), x, rate_index, False,
                          weights=weights)  # fmt: skip
        return total - out.commit_loss

    plain = loss(None)
    assert torch.allclose(loss(torch.tensor([3.0, 3.0])), 3 * plain)
    low, high = (loss(torch.tensor(w)) for w in ([1.0, 0.0], [0.0, 1.0]))  # each sample's half
    assert torch.allclose(low + high, plain) and 0 < low < high  # the higher lambda weighs more
    with pytest.raises(SystemExit, match="gives 3 weights; the model has 2 rate points"):
        Run(RDTrainConfig(out=str(tmp_path), model=TINY, rate_weights=[1.0, 2.0, 3.0]))
