"""An experiment, not vaekit's behaviour: vaekit's VampPrior with the pseudo-inputs parameterized
as Tomczak and Welling's code and pythae have them (u_k = Hardtanh(0, 1)(W e_k + b), with
nn.Linear's default start, so near black), patched in for this process only, then
``benchmarks/quality.py`` unchanged, with the same arguments.

Usage (from the repository root)::

    python benchmarks/vamp_pseudo_inputs.py --data-dir ../shared/data/mnist --budget 600 --n-test 2000 \
        --n-importance 1000 --only "vaekit VAE, VampPrior (100)" --seed 1 --out /tmp/vamp-paper

For data in [0, 1] only (the clamp); vaekit's own VampPrior is unchanged (RESULTS.md, issue 12).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vaekit.models import priors  # noqa: E402

_init = priors.VampPrior.__init__


def init(self, latent_dim, *, components=10, encoder=None, data_shape=(), **options):
    """vaekit's own start, then the pseudo-inputs replaced: u_k = W[:, k] + b, W and b drawn as
    nn.Linear(K, D) draws them (uniform within 1/sqrt(K)), seeded."""
    _init(self, latent_dim, components=components, encoder=encoder, data_shape=data_shape, **options)
    g = torch.Generator().manual_seed(0)
    bound = 1 / components ** 0.5
    self.pseudo_inputs = nn.Parameter((torch.rand(components, *data_shape, generator=g) * 2 - 1) * bound)
    self.pseudo_bias = nn.Parameter((torch.rand(*data_shape, generator=g) * 2 - 1) * bound)


def forward(self):
    """p(z) = 1/K sum_k q(z | Hardtanh(0, 1)(u_k)): the pseudo-inputs kept in the pixel range."""
    u = F.hardtanh(self.pseudo_inputs + self.pseudo_bias, 0.0, 1.0)
    qu = self._encoder[0](u)
    mixture = Categorical(logits=torch.zeros(len(u), device=u.device), validate_args=False)
    return MixtureSameFamily(mixture, Independent(Normal(qu.mean, qu.stddev, validate_args=False), 1),
                             validate_args=False)


if __name__ == "__main__":
    priors.VampPrior.__init__ = init
    priors.VampPrior.forward = forward
    import quality

    quality.main(sys.argv[1:])
