"""The integer-exact twin of the VQ-VAE family's `HierarchicalPrior`: one
`IntegerLevelPrior` per stream, built once per loaded model."""

from hvqcodec.families.vqvae.prior import HierarchicalPrior
from hvqcodec.integer_layers import check_layers
from hvqcodec.integer_prior import IntegerLevelPrior


class IntegerPrior:
    """Integer-exact twins of a `HierarchicalPrior`'s levels, built once per loaded model."""

    def __init__(self, prior: HierarchicalPrior):
        self.levels = {name: IntegerLevelPrior(p) for name, p in prior.levels.items()}
        check_bounds(self)


def check_bounds(prior: IntegerPrior) -> None:
    """Refuse a model whose integer layers could leave float64's exact range."""
    for name, level in prior.levels.items():
        check_layers(f"prior level {name}", level.layers())
