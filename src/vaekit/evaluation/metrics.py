"""Held-out figures: the ELBO and its parts in nats per example, and bits per dimension."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..seeding import seeded


def bits_per_dim(log_likelihood_nats: float, n_dims: int) -> float:
    """``-log p(x) / (D ln 2)``: a log-likelihood in nats per example as bits per dimension."""
    return -log_likelihood_nats / (n_dims * math.log(2))


@torch.inference_mode()
def evaluate(model, x: Tensor, *, batch_size: int = 500, seed: int = 0) -> dict[str, Any]:
    """Mean held-out objective terms, reconstruction error, and bits per dimension.

    The sampling noise is drawn with the random state seeded by ``seed``, so the same model and
    data give the same figures every time (this is how ``vaekit evaluate`` reproduces the
    figure that training logged).

    Parameters
    ----------
    model : VAE, Autoencoder or PCA (anything with ``objective`` and ``reconstruct``)
    x : Tensor, shape (N, *data_shape)
    batch_size : int
        examples per batch; 500 adds 8-14 MiB less to a process's peak memory than 1000 on
        MNIST-sized images, in time within the machine's noise (benchmarks/RESULTS.md)
    seed : int

    Returns
    -------
    dict with the mean of every term of ``model.objective`` in nats per example (for a VAE:
    ``elbo``, ``reconstruction`` = E_q[log p(x|z)] and ``kl``; the ELBO is higher-is-better and
    equals reconstruction - kl), ``bits_per_dim`` (of the ELBO, or of an exact log-likelihood),
    ``reconstruction_error`` (squared error per example at z = E_q[z], summed over dimensions)
    and ``n_examples``.
    """
    device = model.device
    was_training = model.training
    model.eval()
    sums, names = None, ()
    with seeded(seed, device):
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device, non_blocking=True)
            terms = model.objective(xb)
            sq_err = (model.reconstruct(xb) - xb).square().flatten(1).sum(1)
            batch = torch.stack([t.sum(dtype=torch.float64) for t in (*terms, sq_err)])
            sums, names = (batch if sums is None else sums + batch), terms._fields
    model.train(was_training)
    n = len(x)
    means = dict(zip((*names, "reconstruction_error"), (sums / n).tolist()))
    bound = means.get("elbo", means.get("log_likelihood"))
    n_dims = math.prod(x.shape[1:])
    result = {k: means[k] for k in names}
    if bound is not None:
        result["bits_per_dim"] = bits_per_dim(bound, n_dims)
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

    Beside :func:`evaluate`'s figures: with ``n_importance`` K, the importance-weighted
    ``log_likelihood`` and the ``gap`` (log-likelihood minus ELBO, an estimate of
    KL(q(z|x) || p(z|x)), averaged over examples); ``active_units`` (units whose
    Cov_x(E_q[z]) exceeds 0.01, Burda et al. 2015); ``probe_accuracy``, the test accuracy of a
    logistic regression on the training set's latent means (``None`` without labels).
    """
    from .embed import encode_means
    from .estimators import active_units, log_likelihood
    from .probe import linear_probe_accuracy
    from ..data.prepare import load_labelled_split

    model, shape = run.model, run.model_config.data_shape
    data_info = run.info.get("data", {})
    x, y = load_labelled_split(run.train_config, split, data=data, data_dir=data_dir, data_shape=shape, data_info=data_info)
    what = data or f"dataset {run.train_config.data!r}"
    if n_examples is not None:
        x, y = x[:n_examples], (None if y is None else y[:n_examples])
    model.check_data(x, what)
    name = data_info.get("test_split", "test") if split == "test" else split
    result: dict[str, Any] = {"split": name if data is None else what, **evaluate(model, x, batch_size=batch_size, seed=seed)}
    if n_importance is not None:
        if "elbo" not in result:
            from ..errors import VaekitError

            raise VaekitError(f"--n-importance: a {run.model_config.model!r} model has no q(z|x) to sample; it applies to a vae")
        ll = log_likelihood(model, x, n_importance, batch_size=max(1, min(batch_size, 100)), chunk_size=chunk_size,
                            generator_seed=seed)
        result["log_likelihood"] = float(ll.mean())
        result["gap"] = result["log_likelihood"] - result["elbo"]
        result["n_importance"] = n_importance
        result["log_likelihood_bits_per_dim"] = bits_per_dim(result["log_likelihood"], math.prod(shape))
    result["active_units"] = active_units(model, x, batch_size=batch_size)
    result["probe_accuracy"] = None
    if probe and y is not None and data is None:
        x_train, y_train = load_labelled_split(run.train_config, "train", data_shape=shape, data_info=data_info)
        z_train = encode_means(model, x_train, batch_size=batch_size)
        result["probe_accuracy"] = linear_probe_accuracy(z_train, y_train, encode_means(model, x, batch_size=batch_size), y)
    return result
