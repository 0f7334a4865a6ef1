"""The hvq-v3 family's weights file, `hvqcodec-weights/2`:

    {"format": "hvqcodec-weights/2", "name": str, "config": dict, "model": state_dict,
     "tables": int32 (T, width), "radii": int32 (T,),        # the fine symbols' tables
     "scales": {key: float32 (len,)}}                        # optional: int8 tensors' scales

Float tensors are stored as float16, and in a file with "scales" the large ones outside the
synthesis as int8 times one float32 scale per slice of their first dimension
(`hvqcodec.storage.int8_state`), which takes hvq-v3 from 20 to 12 MB.
"""

import torch

from hvqcodec.errors import HvqError
from hvqcodec.families.hyper.integer import IntegerHyperSynthesis, gaussian_tables
from hvqcodec.families.hyper.integer_context import IntegerChannelContext
from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig
from hvqcodec.families.hyper.pipeline import HyperModel
from hvqcodec.integer_layers import check_layers
from hvqcodec.integer_prior import IntegerLevelPrior
from hvqcodec.storage import cast, fingerprint, float32_state, int8_state

WEIGHTS_FORMAT = "hvqcodec-weights/2"


def model_id(weights: dict) -> int:
    """The fingerprint of the config, every tensor of the model, then the tables, then the
    int8 scales if any."""
    tables = {"radii": weights["radii"], "tables": weights["tables"]}
    scales = [weights["scales"]] if weights.get("scales") else []
    return fingerprint(weights["config"], weights["model"], tables, *scales)


# The synthesis, which the pixels come from, stays float16: with it in int8 too, hvq-v3 lost up
# to 0.05 dB on the validation photos, without it 0.006 at most (benchmarks/results/
# training/validation-step43010-*.json).
KEEP_FLOAT16 = ("synthesis.",)


def pack_weights(name: str, net: VQHyperprior, *, int8: bool = True) -> dict:
    """A weights file of `net`; `int8=False` keeps every float tensor float16, as hvq-v3's
    first file (20 MB) does. With int8 it is 12 MB, so that a retrained model fits beside the
    ones already shipped."""
    tables, radii = gaussian_tables()
    state = net.state_dict()
    model, scales = int8_state(state, KEEP_FLOAT16) if int8 else (cast(state, torch.float16), {})
    weights = {
        "format": WEIGHTS_FORMAT,
        "name": name,
        "config": net.config.to_dict(),
        "model": model,
        "tables": tables,
        "radii": radii,
    }
    return {**weights, "scales": scales} if scales else weights


def build(weights: dict) -> HyperModel:
    """The loaded model of a weights dict of this format."""
    try:
        net = VQHyperprior(VQHyperpriorConfig.from_dict(weights["config"]))
        net.load_state_dict(float32_state(weights["model"], weights.get("scales") or {}))
        tables, radii = weights["tables"].long().numpy(), weights["radii"].long().numpy()
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise HvqError(f"weights file is corrupt or incompatible: {e}") from None
    net.eval().requires_grad_(False)  # the encoder's refinement wants gradients of symbols only
    codebooks = {k: q.codebook for k, q in net.quantizers.items()}
    priors = {k: IntegerLevelPrior(p) for k, p in net.priors.items()}
    hyper = IntegerHyperSynthesis(net.hyper_synthesis, codebooks)
    for what, level in {**priors, "hyper synthesis": hyper}.items():
        check_layers(what, level.layers())
    context = None if net.context is None else IntegerChannelContext(net.context)
    name = str(weights.get("name", "?"))
    return HyperModel(name, model_id(weights), net, priors, hyper, tables, radii,
                      context=context)  # fmt: skip
