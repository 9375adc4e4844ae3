"""Held-out figures: the ELBO and its parts in nats per example, and bits per dimension."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..data.examples import as_examples
from ..errors import VaekitError
from ..data.prepare import check_model_data, load_examples, log_jacobian
from ..seeding import seeded
from .embed import encode_means
from .estimators import active_units, log_likelihood
from .probe import linear_probe_accuracy


def bits_per_dim(log_likelihood_nats: float, n_dims: int) -> float:
    """``-log p(x) / (D ln 2)``: a log-likelihood in nats per example as bits per dimension."""
    return -log_likelihood_nats / (n_dims * math.log(2))


# the terms that are log-densities of x (in nats), which a transform of the data shifts
DENSITY_TERMS = ("elbo", "reconstruction", "log_likelihood", "iwae")


def in_data_units(figures: dict[str, Any], log_jacobian: float, prefixes: tuple[str, ...] = ("",)) -> dict[str, Any]:
    """``figures`` with every log-density (``DENSITY_TERMS``, after each prefix) plus the
    data transform's log-Jacobian: densities of the data as given rather than as standardized."""
    if not log_jacobian:
        return figures
    out = dict(figures)
    for prefix in prefixes:
        for term in DENSITY_TERMS:
            if isinstance(out.get(prefix + term), float):
                out[prefix + term] += log_jacobian
    return out


@torch.inference_mode()
def evaluate(model, data: Any, *, batch_size: int = 500, seed: int = 0, log_jacobian: float = 0.0) -> dict[str, Any]:
    """Mean held-out terms of the model, reconstruction error, and bits per dimension.

    The sampling noise is drawn with the random state seeded by ``seed``, so the same model and
    data give the same figures every time (this is how ``vaekit evaluate`` reproduces the
    figure that training logged).

    Parameters
    ----------
    model : a :class:`vaekit.models.Model` (VAE, Autoencoder, PCA or your own)
    data : :class:`vaekit.data.Examples` (examples with their labels, which reach the model's
        ``elbo(batch)``), or a tensor ``(N, *data_shape)`` or lazy array of examples
    batch_size : int
        examples per batch; 500 adds 8-14 MiB less to a process's peak memory than 1000 on
        MNIST-sized images, in time within the machine's noise (benchmarks/RESULTS.md)
    seed : int

    Returns
    -------
    dict with ``headline``, the key of the figure the model leads with, ``terms``, the names of
    the model's terms, the mean of every term of ``model.elbo`` in nats per example (for a VAE:
    ``elbo``, ``reconstruction`` = E_q[log p(x|z)] and ``kl``; the ELBO is higher-is-better and
    equals reconstruction - kl), ``bits_per_dim`` (of the headline figure, when it is log p(x)
    or a bound on it), ``reconstruction_error`` (squared error per example at z = E_q[z],
    summed over dimensions) and ``n_examples``.
    """
    examples = as_examples(data)
    device = model.device
    was_training = model.training
    model.eval()
    sums, names = None, ()
    with seeded(seed, device):
        for batch in examples.batches(batch_size, device):
            terms = model.elbo(batch)
            sq_err = (model.reconstruct(batch) - batch["x"]).square().flatten(1).sum(1)
            batch_sums = torch.stack([t.sum(dtype=torch.float64) for t in (*terms, sq_err)])
            sums, names = (batch_sums if sums is None else sums + batch_sums), terms._fields
    model.train(was_training)
    n = len(examples)
    means = dict(zip((*names, "reconstruction_error"), (sums / n).tolist()))
    result: dict[str, Any] = {"headline": model.headline.key, "terms": list(names),
                              **in_data_units({k: means[k] for k in names}, log_jacobian)}
    if model.headline.kl_estimated:
        result["kl_estimated"] = True  # by sampling: no closed form for this prior or these layers
    if model.headline.bounds_log_likelihood:
        result["bits_per_dim"] = bits_per_dim(result[model.headline.key], math.prod(examples.shape[1:]))
    result["reconstruction_error"] = means["reconstruction_error"]
    result["n_examples"] = n
    return result


def evaluate_run(
    run,
    *,
    split: str = "test",
    data: str | None = None,
    data_dir: str | None = None,
    n_examples: int | None = None,
    n_importance: int | None = None,
    chunk_size: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    probe: bool = True,
) -> dict[str, Any]:
    """Everything ``vaekit evaluate`` reports for a loaded run directory.

    Beside :func:`evaluate`'s figures: ``headline``, the key of the figure the model leads
    with; with ``n_importance`` K, the importance-weighted ``log_likelihood`` and the ``gap``
    (log-likelihood minus the headline bound, an estimate of KL(q(z|x) || p(z|x)), averaged
    over examples); ``active_units`` (units whose Cov_x(E_q[z]) exceeds 0.01, Burda et al.
    2015); ``probe_accuracy``, the test accuracy of a logistic regression on the training set's
    latent means (``None`` without labels).
    """
    model, shape = run.model, run.model_config.data_shape
    data_info = run.info.get("data", {})
    examples = load_examples(run.train_config, split, data=data, data_dir=data_dir, data_shape=shape,
                             data_info=data_info)
    what = data or f"dataset {run.train_config.data!r}"
    if n_examples is not None:
        examples = examples.head(n_examples)
    check_model_data(model, examples.x, what)
    name = data_info.get("test_split", "test") if split == "test" else split
    headline = model.headline
    jacobian = log_jacobian(data_info)  # the figures are densities of the data as given
    result: dict[str, Any] = {"split": name if data is None else what,
                              **evaluate(model, examples, batch_size=batch_size, seed=seed, log_jacobian=jacobian)}
    if n_importance is not None:
        if headline.exact or not headline.bounds_log_likelihood:
            why = "its log-likelihood is exact" if headline.exact else "it has no q(z|x) and p(z) to weigh samples by"
            raise VaekitError(f"--n-importance: a {run.model_config.model!r} model needs no importance sampling "
                              f"({why}); it applies to a vae")
        ll = log_likelihood(model, examples, n_importance, chunk_size=chunk_size, generator_seed=seed)
        result["log_likelihood"] = float(ll.mean()) + jacobian
        result["gap"] = result["log_likelihood"] - result[headline.key]
        result["n_importance"] = n_importance
        result["log_likelihood_bits_per_dim"] = bits_per_dim(result["log_likelihood"], math.prod(shape))
    result["active_units"] = active_units(model, examples, batch_size=batch_size)
    result["probe_accuracy"] = None
    if probe and examples.y is not None and data is None:
        train = load_examples(run.train_config, "train", data_shape=shape, data_info=data_info)
        if train.y is not None:
            z_train = encode_means(model, train, batch_size=batch_size)
            result["probe_accuracy"] = linear_probe_accuracy(z_train, train.y, encode_means(model, examples, batch_size=batch_size),
                                                             examples.y)
    return result
