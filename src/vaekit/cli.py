"""The ``vaekit`` command: it parses arguments and dispatches to the library, nothing more.

Bad input ends in one line on stderr, ``vaekit: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import dataclasses

from .config import (ARCH_NAMES, BINARIZE_MODES, DATASET_NAMES, LIKELIHOOD_NAMES, LR_SCHEDULES, MODEL_NAMES, OBJECTIVES,
                     PATIENCE, PATIENCE_STEPS, PRESETS, PRIOR_NAMES, STEP_BUDGET, ModelConfig, TrainConfig)

_MODEL_DEFAULTS = ModelConfig()
_TRAIN_DEFAULTS = TrainConfig()


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _checked(convert, ok, need: str, noun: str):
    """An argparse type: ``convert(text)``, refused in one line when it fails ("is not ``noun``")
    or when ``ok(value)`` does not hold ("``need``")."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not ok(value):  # NaN fails every comparison, so every check
            raise argparse.ArgumentTypeError(f"{text} {need}")
        return value

    return parse


_positive_int = _checked(int, lambda v: v >= 1, "must be at least 1", "an integer")
_non_negative_int = _checked(int, lambda v: v >= 0, "must be at least 0", "an integer")
_positive_float = _checked(float, lambda v: 0 < v < float("inf"), "must be a positive finite number", "a number")
# --contamination: the share of outliers expected, as PyOD's detectors take it
_contamination = _checked(float, lambda v: 0 < v <= 0.5, "must be a share in (0, 0.5]", "a number")
_temperature = _checked(float, lambda v: 0 <= v < float("inf"), "must be a finite number, at least 0", "a number")
_port = _checked(int, lambda v: 0 <= v <= 65535, "is not a TCP port (0 to 65535)", "an integer")  # 0: any free one


def _names(builtin: tuple[str, ...], module: str, registry: str) -> list[str]:
    """The names an option takes: the built-in ones, and any registered since when ``module``
    (which holds the dict ``registry``) is loaded already. Never imports it: the parser, and so
    ``--help``, stays free of torch."""
    return sorted({*builtin, *getattr(sys.modules.get(module), registry, ())})


def _add_data(p: argparse.ArgumentParser, default: str | None) -> None:
    names = ", ".join(_names(DATASET_NAMES, "vaekit.data.builtin", "DATASETS"))
    p.add_argument("--data", default=default, metavar="NAME|PATH",
                   help=f"a built-in dataset ({names}), or your data: a .npy/.npz array (N x D, N x H x W or "
                   "N x C x H x W), a .csv/.tsv table of numbers, or a folder of PNG/JPEG images (one subfolder per "
                   "class gives labels)" + (f" (default: {default})" if default else " (default: the run's data, "
                   "read and transformed as in training)"))
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding the dataset's files (default: $VAEKIT_DATA/NAME, else the cache, "
                   "downloading there if needed)")


def _add_split(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", choices=["train", "test", "all"],
                   help="which rows: test, the held-out validation rows of the run's own file (a built-in "
                   "dataset's test split); train, the rest (its training split); all, every row (training then "
                   "test split) (default: every row of the run's own file in the file's order, read and "
                   "transformed as in training; a built-in dataset's test split; a --data file is always read whole)")


def _add_id_column(p: argparse.ArgumentParser) -> None:
    p.add_argument("--id-column", metavar="NAME",
                   help="a .csv/.tsv column naming the rows (its header name, or its 0-based index without a "
                   "header): written, as it is, as the first column of a .csv output, and never a feature (a run "
                   "trained with --id-column keeps its id column out of the features either way)")


#: ``vaekit plot --kind``: the keys and captions of ``vaekit.figures.KINDS``, kept here so that the
#: parser never imports matplotlib (tests/test_figures.py checks that the two agree)
_PLOT_KINDS = {
    "reconstructions": "held-out inputs beside their reconstructions",
    "samples": "decoded draws from the prior (--temperature)",
    "interpolations": "linear and spherical paths between the encodings of held-out pairs",
    "latent": "held-out latent means by label, projected to 2-D, with q(z|x) ellipses",
    "manifold": "a decoded grid over a 2-D latent at the prior's quantiles",
    "traversals": "one latent unit at a time from -3 to +3 standard deviations",
    "kl-per-unit": "the mean KL of each latent unit, with the active threshold",
    "curves": "the training curves of metrics.csv",
}


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to compute (default: auto, CUDA then MPS then CPU)")


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``preset`` (a key of ``vaekit.config.PRESETS``) ``train``'s
    defaults are the preset's, so every flag given still overrides its own."""
    models = _names(MODEL_NAMES, "vaekit.models.registry", "MODELS")
    priors = _names(PRIOR_NAMES, "vaekit.models.priors", "PRIORS")
    likelihoods = _names(LIKELIHOOD_NAMES, "vaekit.models.likelihoods", "LIKELIHOODS")
    archs = _names(ARCH_NAMES, "vaekit.models.networks", "ARCHS")

    parser = _Parser(prog="vaekit", description="Variational autoencoders: train, evaluate, sample, encode.")
    from .version import __version__
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("train", help="train a VAE and write a run directory",
                       description="Train a VAE by maximizing the ELBO; write config, weights, metrics and figures to --run-dir.")
    _add_data(p, _TRAIN_DEFAULTS.data)
    p.add_argument("--label-column", metavar="NAME",
                   help="a table's column of labels (its header name, or its 0-based index when there is no header); "
                   "kept out of the features, used for the linear probe")
    p.add_argument("--id-column", metavar="NAME",
                   help="a table's column naming the rows, e.g. a customer id (its header name, or its 0-based "
                   "index when there is no header): kept out of the features; encode and score --id-column "
                   "write it beside their results")
    p.add_argument("--image-size", type=_positive_int, nargs=2, metavar=("H", "W"),
                   help="resize a folder's images to H x W (needed when their sizes differ)")
    p.add_argument("--grayscale", action="store_true", help="read a folder's images as one channel")
    p.add_argument("--memmap", action=argparse.BooleanOptionalAction, default=None,
                   help="read a .npy lazily, a batch at a time, so it never has to fit in memory "
                   "(default: when the file is larger than 1 GiB)")
    p.add_argument("--run-dir", metavar="DIR", help="where to write the run (default: runs/DATA-DATE-TIME); must not hold a run")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="passes over the training set (default: as many as --max-steps allows; with --resume, the run's own)")
    p.add_argument("--max-steps", type=_positive_int, default=_TRAIN_DEFAULTS.max_steps, metavar="N",
                   help=f"without --epochs, train for N optimizer steps, rounded up to whole epochs "
                   f"(default: {STEP_BUDGET})")
    p.add_argument("--model", default=_MODEL_DEFAULTS.model, choices=models,
                   help="vae; cvae, a conditional VAE on the data's labels (q(z|x,y), p(x|z,y); sample draws a "
                   "class with --label); or a baseline at the same latent size: ae (the same networks, no sampling, "
                   "no KL) or pca (closed form, read as probabilistic PCA) (default: %(default)s)")
    p.add_argument("--prior", default=_MODEL_DEFAULTS.prior, choices=priors,
                   help="p(z): standard is N(0, I), with its KL in closed form; mog, a learned mixture of "
                   "--prior-components Gaussians; vamp, the VampPrior, the mixture of the encoder's posteriors at "
                   "--prior-components learned pseudo-inputs (https://arxiv.org/abs/1705.07120); mog and vamp have "
                   "their KL estimated by sampling (default: %(default)s)")
    p.add_argument("--prior-components", type=_positive_int, default=_MODEL_DEFAULTS.prior_components, metavar="K",
                   help="mixture components of --prior mog or vamp (default: %(default)s)")
    p.add_argument("--latent-dims", type=_positive_int, nargs=2, metavar=("Z1", "Z2"),
                   help="two stochastic layers instead of one: z1 near the data, z2 on top, e.g. 100 50 "
                   "(Burda et al. 2015); their KL is estimated by sampling")
    p.add_argument("--hidden-top", type=_positive_int, nargs="+", default=list(_MODEL_DEFAULTS.hidden_top), metavar="N",
                   help="with --latent-dims: widths of the MLPs between z1 and z2 (default: %(default)s)")
    p.add_argument("--latent-dim", type=_positive_int, default=_MODEL_DEFAULTS.latent_dim,
                   help="size of z (default: min(D, 32), D the values per example)")
    p.add_argument("--likelihood", default=_MODEL_DEFAULTS.likelihood, choices=["auto", *likelihoods],
                   help="p(x|z): bernoulli (cross-entropy), continuous-bernoulli, gaussian (fixed variance "
                   "--gaussian-variance, the weighted L2 loss), gaussian-learned (a learned variance per dimension), "
                   "gaussian-lowrank (gaussian-learned plus a learned low-rank covariance across dimensions); "
                   "auto: bernoulli for images and arrays in [0, 1], gaussian-lowrank for tables and other values "
                   "(default: %(default)s; the choice is printed)")
    p.add_argument("--gaussian-variance", type=_positive_float, default=_MODEL_DEFAULTS.gaussian_variance,
                   help="c in p(x|z) = N(f(z), c I); the start value of the learned variances (default: %(default)s)")
    p.add_argument("--arch", default=_MODEL_DEFAULTS.arch, choices=archs,
                   help="networks: mlp, conv (images), resnet (residual convolutions, images), linear (probabilistic "
                   "PCA with gaussian) (default: %(default)s)")
    p.add_argument("--hidden", type=_positive_int, nargs="+", default=_MODEL_DEFAULTS.hidden, metavar="N",
                   help="hidden layer widths of the encoder trunk, mirrored in the decoder; for conv the dense "
                   "width (default: w and max(w/2, 128), w the power of two at or above 8 D in [128, 1024])")
    p.add_argument("--activation", default=_MODEL_DEFAULTS.activation, choices=["relu", "tanh"],
                   help="after every hidden layer (default: %(default)s)")
    p.add_argument("--conv-channels", type=_positive_int, nargs="+", default=list(_MODEL_DEFAULTS.conv_channels),
                   metavar="N", help="channels of the stride-2 convolutions, for --arch conv (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=_TRAIN_DEFAULTS.batch_size,
                   help="examples per step (default: N/64 for N training examples, down to a power of two in [16, 128])")
    p.add_argument("--lr", type=_positive_float, default=_TRAIN_DEFAULTS.lr, help="Adam's learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=_TRAIN_DEFAULTS.seed, help="fixes initialization, split, batches and noise (default: %(default)s)")
    p.add_argument("--binarize", default=_TRAIN_DEFAULTS.binarize, choices=BINARIZE_MODES,
                   help="none: grey levels as they are; dynamic: a fresh Bernoulli draw of the training set every "
                   "epoch; static: drawn once. Held-out sets are drawn once with a fixed seed (default: %(default)s)")
    p.add_argument("--val-fraction", type=float, default=_TRAIN_DEFAULTS.val_fraction,
                   help="share of the training set held out for the validation ELBO (default: %(default)s)")
    g = p.add_argument_group("the objective (reported figures are always the true ELBO)")
    g.add_argument("--objective", default=_TRAIN_DEFAULTS.objective, choices=OBJECTIVES,
                   help="elbo; iwae, the importance-weighted bound with --n-samples draws per example (Burda et al. "
                   "2015, https://arxiv.org/abs/1509.00519); dreg, the same bound with the doubly reparameterized "
                   "encoder gradient (Tucker et al. 2019, https://arxiv.org/abs/1810.04152) (default: %(default)s)")
    g.add_argument("--n-samples", type=_positive_int, default=_TRAIN_DEFAULTS.n_samples, metavar="K",
                   help="draws of q(z|x) per example in every step; all K go through the decoder as one batch "
                   "(default: %(default)s)")
    g = p.add_argument_group("the KL weight (only beta 1 with no free bits trains on the ELBO itself; "
                             "reported figures are always the true ELBO)")
    g.add_argument("--beta", type=float, default=_TRAIN_DEFAULTS.beta,
                   help="weight of the KL term (beta-VAE, https://openreview.net/forum?id=Sy2fzU9gl) (default: %(default)s)")
    g.add_argument("--kl-warmup-steps", type=int, default=_TRAIN_DEFAULTS.kl_warmup_steps, metavar="N",
                   help="ramp beta linearly from 0 over N optimizer steps (default: %(default)s)")
    g.add_argument("--free-bits", type=float, default=_TRAIN_DEFAULTS.free_bits, metavar="NATS",
                   help="each latent dimension's batch-mean KL costs at least this much "
                   "(Kingma et al. 2016, https://arxiv.org/abs/1606.04934) (default: %(default)s)")
    g = p.add_argument_group("optimization")
    g.add_argument("--lr-schedule", default=_TRAIN_DEFAULTS.lr_schedule, choices=LR_SCHEDULES,
                   help="learning-rate schedule by step; burda: 10^(-i/7) in stage i of 3^i epochs "
                   "(Burda et al. 2015) (default: %(default)s)")
    g.add_argument("--adam-beta1", type=float, default=_TRAIN_DEFAULTS.adam_beta1, help="(default: %(default)s)")
    g.add_argument("--adam-beta2", type=float, default=_TRAIN_DEFAULTS.adam_beta2, help="(default: %(default)s)")
    g.add_argument("--adam-eps", type=_positive_float, default=_TRAIN_DEFAULTS.adam_eps,
                   help="Adam's epsilon (default: %(default)s)")
    g.add_argument("--lr-warmup-steps", type=int, default=_TRAIN_DEFAULTS.lr_warmup_steps, metavar="N",
                   help="linear learning-rate warm-up (default: %(default)s)")
    g.add_argument("--lr-step-epochs", type=_positive_int, default=_TRAIN_DEFAULTS.lr_step_epochs, metavar="E",
                   help="for --lr-schedule step: multiply by --lr-gamma every E epochs (default: %(default)s)")
    g.add_argument("--lr-gamma", type=_positive_float, default=_TRAIN_DEFAULTS.lr_gamma, help="(default: %(default)s)")
    g.add_argument("--patience", type=_non_negative_int, metavar="E",
                   help=f"stop after E epochs without a better validation figure, never during KL warm-up; 0: never "
                   f"(default: with a validation split, {PATIENCE} epochs or {PATIENCE_STEPS} steps, whichever is longer)")
    g.add_argument("--max-seconds", type=_positive_float, metavar="S",
                   help="a wall-clock budget: stop at the end of the first epoch that ends past S seconds of "
                   "this call (checkpointed; --resume continues with a new budget)")
    g.add_argument("--grad-clip", type=_positive_float, metavar="NORM", help="clip the gradient's norm")
    g.add_argument("--on-nan", default=_TRAIN_DEFAULTS.on_nan, choices=["stop", "skip"],
                   help="a non-finite loss or gradient: stop with the last good checkpoint, or skip the batch "
                   "(counted in metrics.csv) (default: %(default)s)")
    g.add_argument("--precision", default=_TRAIN_DEFAULTS.precision, choices=["fp32", "bf16"],
                   help="bf16: autocast the forward pass (for GPUs) (default: %(default)s)")
    g = p.add_argument_group("checkpoints and logging")
    g.add_argument("--resume", metavar="RUN",
                   help="continue RUN from its last checkpoint with its own settings: other options are refused "
                   "unless they equal the run's, but --epochs N trains up to epoch N and --max-seconds sets this "
                   "call's budget")
    g.add_argument("--checkpoint-every", type=_positive_int, metavar="STEPS",
                   help="also checkpoint every STEPS optimizer steps (always at every epoch's end)")
    g.add_argument("--tensorboard", action="store_true", help="write TensorBoard events to RUN/tensorboard")
    _add_device(p)

    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="start from a published protocol's settings, each overridable by its own flag: "
                   "burda-1layer (784-200-200-50) and burda-2layer (two stochastic layers 100 and 50), Burda et al. "
                   "2015's dynamically binarized MNIST: tanh, Adam eps 1e-4, batch 20, 3280 epochs in stages of 3^i")
    if preset in PRESETS:
        p.set_defaults(**{k: list(v) if isinstance(v, tuple) else v
                          for part in PRESETS[preset].values() for k, v in part.items()})

    p = sub.add_parser("evaluate", help="test ELBO, its parts, log-likelihood, gap, active units, probe accuracy",
                       description="Held-out figures of a run's model in nats per example and bits per dimension: the ELBO "
                       "and its parts; with --n-importance the importance-weighted log-likelihood and the gap; active "
                       "latent units; the accuracy of a linear probe on the latent means (datasets with labels).")
    p.add_argument("run", metavar="RUN", help="a run directory")
    _add_data(p, None)
    p.add_argument("--split", default="test", choices=["train", "test", "all"], help="which part of a built-in dataset (default: test)")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    p.add_argument("--n-importance", type=_positive_int, metavar="K",
                   help="also estimate log p(x) by importance sampling with K samples of q(z|x) (Burda et al. 2015 "
                   "use 5000) and report the gap log p(x) - ELBO, an estimate of KL(q(z|x) || p(z|x))")
    p.add_argument("--chunk-size", type=_positive_int, metavar="N",
                   help="importance samples drawn at once; bounds memory (default: chosen from the data size)")
    p.add_argument("--n-examples", type=_positive_int, metavar="N", help="evaluate the first N examples only")
    p.add_argument("--no-probe", action="store_true",
                   help="skip the linear probe (logistic regression on the training set's latent means)")
    p.add_argument("--batch-size", type=_positive_int, default=500, help="examples per batch (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default: %(default)s)")
    _add_device(p)

    p = sub.add_parser("sample", help="generate from the prior",
                       description="Decode z ~ p(z): the means of p(x|z), or with --draw draws from it.")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("-n", type=_positive_int, default=64, help="how many samples (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="a .png grid or a .npy array")
    p.add_argument("--seed", type=int, default=0, help="seed of z (and of the draws of x) (default: %(default)s)")
    p.add_argument("--draw", action="store_true",
                   help="draw x ~ p(x|z) (0/1 pixels from a Bernoulli, noisy values from a Gaussian) instead of "
                   "writing its means")
    p.add_argument("--temperature", type=_temperature, default=1.0, metavar="T",
                   help="scale the prior's standard deviation by T: z ~ N(0, T^2 I) for the standard prior, each "
                   "component's for mog and vamp; below 1 trades variety for typical samples, 0 decodes the "
                   "prior's mean (default: %(default)s)")
    p.add_argument("--label", metavar="CLASS",
                   help="for a conditional model (--model cvae): draw this class, by its index or its name")
    _add_device(p)

    p = sub.add_parser("reconstruct", help="encode and decode data",
                       description="The means of p(x|z) at z = E_q[z] of the first -n examples; as a .png, each "
                       "row of inputs above the row of their reconstructions.")
    p.add_argument("run", metavar="RUN", help="a run directory")
    _add_data(p, None)
    _add_split(p)
    p.add_argument("-n", type=_positive_int, default=32, help="how many examples (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="a .png grid or a .npy array of reconstructions")
    _add_device(p)

    p = sub.add_parser("encode", help="latent means of data (dimensionality reduction)",
                       description="Write E_q[z|x] for every example, in the data's order.")
    p.add_argument("run", metavar="RUN", help="a run directory")
    _add_data(p, None)
    _add_split(p)
    _add_id_column(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="a .npy array (N, latent_dim) or a .csv table with a header, rows in the data's order")
    p.add_argument("--with-scale", action="store_true",
                   help="also write the scales of q(z|x): (N, 2 * latent_dim), means then scales")
    p.add_argument("--batch-size", type=_positive_int, default=1000, help="examples per batch (default: %(default)s)")
    _add_device(p)

    p = sub.add_parser("score", help="per-example anomaly scores (higher is more unusual)",
                       description="Write one score per example, in the data's order: the negative ELBO "
                       "(--method elbo, averaged over --n-samples draws) or the negative importance-weighted "
                       "log-likelihood (--method iw, K = --n-samples). The most unusual rows score highest.")
    p.add_argument("run", metavar="RUN", help="a run directory")
    _add_data(p, None)
    _add_split(p)
    _add_id_column(p)
    p.add_argument("--method", default="elbo", choices=["elbo", "iw"], help="negative ELBO or negative log p(x) (default: %(default)s)")
    p.add_argument("--n-samples", type=_positive_int, default=10, metavar="K",
                   help="samples of q(z|x) per example (default: %(default)s)")
    p.add_argument("--contamination", type=_contamination, metavar="C",
                   help="also write a 0/1 column label: 1 where the score is above the (1 - C) quantile of the "
                   "scores of the run's own training rows (PyOD's rule), e.g. 0.05")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="a .csv (columns index, score, and label with --contamination) or a .npy")
    p.add_argument("--batch-size", type=_positive_int, default=100,
                   help="examples per batch for --method elbo; iw sizes its batches to bound memory (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default: %(default)s)")
    _add_device(p)

    p = sub.add_parser("interpolate", help="decode straight lines between latent means",
                       description="For random pairs of examples (held-out ones by default), decode points on the "
                       "line between their latent means.")
    p.add_argument("run", metavar="RUN", help="a run directory")
    _add_data(p, None)
    p.add_argument("--split", default="test", choices=["train", "test", "all"], help="which part of a built-in dataset (default: test)")
    p.add_argument("--seed", type=int, default=0, help="chooses the pairs: the same seed, the same pairs (default: %(default)s)")
    p.add_argument("--pairs", type=_positive_int, default=8, help="how many pairs, one row each (default: %(default)s)")
    p.add_argument("--steps", type=_positive_int, default=10, help="points per line, ends included (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="a .png grid or a .npy array")
    _add_device(p)

    p = sub.add_parser("plot", help="draw one figure of a run (.png or .svg)",
                       description="Draw one figure of a run: images as tile grids, tables as plots per feature "
                       "in the data's units. Kinds: " + "; ".join(f"{k}, {v}" for k, v in _PLOT_KINDS.items()))
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("--kind", required=True, choices=list(_PLOT_KINDS), metavar="KIND",
                   help=f"which figure: {', '.join(_PLOT_KINDS)}")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="a .png or .svg file")
    _add_data(p, None)
    p.add_argument("--seed", type=int, default=0,
                   help="chooses the examples, pairs and prior draws: the same seed, the same figure (default: %(default)s)")
    p.add_argument("--temperature", type=_temperature, default=1.0, metavar="T",
                   help="for --kind samples: scale the prior's standard deviation by T (default: %(default)s)")
    p.add_argument("-n", "--n", type=_positive_int, metavar="N",
                   help="how many, by kind: examples (reconstructions, latent, kl-per-unit), samples, pairs "
                   "(interpolations), the grid's side (manifold), units (traversals) (default: chosen by kind)")
    p.add_argument("--projection", default="pca", choices=["pca", "umap"],
                   help="for --kind latent with more than 2 latent dimensions: pca, or umap (needs umap-learn) "
                   "(default: %(default)s)")
    _add_device(p)

    p = sub.add_parser("report", help="one self-contained HTML page of a run, or of several side by side",
                       description="Write one HTML file that needs nothing else (images embedded, no external "
                       "address): the metrics (ELBO and its parts, bits per dimension, log p(x) where estimated, "
                       "active units, probe accuracy), the training curves, every figure that applies with a sentence "
                       "on what it shows, the configuration, the data and the versions. Several runs compare: a "
                       "column per run. The figures come from each run's summary.json, then its evaluation.json if "
                       "it holds one (vaekit evaluate RUN --json > RUN/evaluation.json); what neither has is "
                       "measured. vaekit train writes RUN/report.html itself.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories, one column each")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the .html file to write")
    p.add_argument("--n-importance", type=_positive_int, metavar="K",
                   help="also estimate log p(x) by importance sampling with K samples of q(z|x), and the gap "
                   "(as vaekit evaluate --n-importance)")
    _add_data(p, None)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the evaluation's noise and of the figures' examples and draws (default: %(default)s)")
    p.add_argument("--no-figures", action="store_true", help="metrics, training curves and configuration only, no other figure (faster)")
    _add_device(p)

    p = sub.add_parser("export", help="the encoder and decoder as ONNX graphs, for inference without vaekit",
                       description="Write DIR/encoder.onnx (x -> loc, scale of q(z|x)), DIR/decoder.onnx (z -> the "
                       "parameters of p(x|z)), both with a dynamic batch axis, and DIR/export.json (the input shape, "
                       "the run's input transform to apply before the encoder and undo after the decoder, the "
                       "likelihood and what each output means, versions, opset). DIR is created if its parent "
                       "exists; an existing DIR must be empty or hold only an earlier export. Plain VAE runs "
                       "(--model vae) only. Needs pip install 'vaekit[onnx]'.")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("--format", required=True, choices=["onnx"], help="the export format: onnx")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the folder to write the files into")

    p = sub.add_parser("serve", help="a live explorer of the latent space in the browser",
                       description="Serve a page with one slider per latent unit (the most active first) that "
                       "redraws the decoded output as you move it, a map of held-out latent means to click, and "
                       "an upload of an image or a table row that shows its encoding and reconstruction. Needs "
                       "pip install 'vaekit[serve]'.")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on; 0.0.0.0 opens the page to other machines (default: %(default)s, "
                   "this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="the TCP port, 0 for any free one (default: %(default)s)")
    _add_device(p)
    return parser


# -- handlers: each parses nothing and does nothing the library could not do ------------------

def _cmd_train(args: argparse.Namespace) -> None:
    import datetime as dt

    from .errors import RunFinished
    from .training import resume, train
    from .training.distributed import world_from_env

    main = world_from_env().is_main  # one process speaks for a torchrun launch
    run_dir = args.resume or args.run_dir or f"runs/{Path(args.data).name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    try:
        with _stops_with_resume_command(run_dir, main):
            if args.resume:
                model, summary = resume(run_dir, epochs=args.epochs, max_seconds=args.max_seconds,
                                        settings=_resume_settings(args))
            else:
                model_config, train_config = configs_from_args(args)
                model, summary = train(model_config, train_config, run_dir)
    except RunFinished as e:  # nothing to do, nothing written: say how to extend the run
        if main:
            print(e)
        return
    if not main:
        return
    print(f"run directory: {run_dir}")
    chosen = json.loads((Path(run_dir) / "config.json").read_text())["data"].get("likelihood_chosen")
    if chosen:
        print(f"likelihood: {chosen}; set --likelihood to change")
    print(_describe(summary, model.headline))
    figures = [str(f) for f in (Path(run_dir) / "reconstructions.png", Path(run_dir) / "samples.png") if f.exists()]
    if figures:  # data that are not images have none
        print(f"figures: {', '.join(figures)}")
    if (Path(run_dir) / "report.html").exists():
        print(f"report: {Path(run_dir) / 'report.html'}")


def _resume_settings(args: argparse.Namespace) -> dict[str, object]:
    """The options given with ``--resume`` that the run must agree with (all but --epochs and
    --max-seconds); ``args.given`` names the options the command line gave."""
    from .errors import VaekitError
    from .training.job import RESUME_OPTIONS

    if "run_dir" in args.given:
        raise VaekitError(f"--run-dir {args.run_dir}: --resume {args.resume} continues the run in its own "
                          "directory; drop --run-dir")
    return {k: getattr(args, k) for k in args.given if k not in ("resume", *RESUME_OPTIONS)}


def _given_options(argv: Sequence[str] | None) -> list[str]:
    """The train options the command line gives, in its order: a second parse in which no option
    has a default tells them from the defaults (an option given at its default value counts)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices["train"]._actions:
        action.default = argparse.SUPPRESS
    return [k for k in vars(parser.parse_args(argv)) if k != "command"]


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process stands, so that training stops as on Ctrl-C."""


class _Stopped(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM: the line to print and the exit status."""

    def __init__(self, line: str, status: int):
        super().__init__(line)
        self.status = status


@contextlib.contextmanager
def _stops_with_resume_command(run_dir: str, main: bool) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop training on one line that gives the command resuming it, with
    the exit status of the signal (130, 143). Under torchrun, which stops its own workers, and
    off the main thread, SIGTERM keeps its default."""
    import signal
    import threading

    from .training.checkpoint import LAST
    from .training.distributed import world_from_env

    def terminated(signum, frame):
        raise _Terminated()

    own = threading.current_thread() is threading.main_thread() and not world_from_env().enabled
    previous = signal.signal(signal.SIGTERM, terminated) if own else None
    try:
        yield
    except KeyboardInterrupt as e:
        what, status = ("terminated", 143) if isinstance(e, _Terminated) else ("interrupted", 130)
        if not main:
            line = ""
        elif (Path(run_dir) / LAST).exists():
            line = f"{what}; resume with: vaekit train --resume {shlex.quote(run_dir)}"
        else:
            line = f"{what} before the first epoch ended; nothing to resume"
        raise _Stopped(line, status) from None
    finally:
        if own:
            signal.signal(signal.SIGTERM, previous)


# Config fields that the train command sets otherwise (data_shape comes from the data; epochs
# defaults to the run's own on --resume).
_NOT_OPTIONS = {"data_shape", "n_classes"}  # n_classes: counted from the data for a conditional model


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """The configs of ``vaekit train``'s options: every option that names a config field fills
    it, so a new field is a new option and nothing is copied by hand."""
    def fill(cls):
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                  if f.name not in _NOT_OPTIONS and getattr(args, f.name, None) is not None}
        return cls(**values)

    return fill(ModelConfig), fill(TrainConfig)


def _describe(m: dict, headline) -> str:
    """One human line of the figures in ``m``, led by the figure the model declares."""
    key, split = headline.key, m.get("split", "test")
    parts = [f"{m[k]:.2f} {k.replace('_', ' ')}" for k in m["terms"] if k != key]
    if headline.bounds_log_likelihood:
        parts.append(f"{m['bits_per_dim']:.4f} bits per dimension")
    note = "exact" if headline.exact else ("a bound on log p(x)" if headline.bounds_log_likelihood
                                           else "no bound on log p(x)")
    if headline.kl_estimated:
        note += ", its KL estimated by sampling"
    first = f"{split} {headline.label} {m[key]:.2f} nats per example ({note}"
    lines = [first + ("; " + ", ".join(parts) if parts else "") + ")"]
    if "n_importance" in m:
        lines.append(f"log p(x) ~ {m['log_likelihood']:.2f} with K={m['n_importance']} importance samples "
                     f"({m['log_likelihood_bits_per_dim']:.4f} bits per dimension), gap {m['gap']:.2f} "
                     "(an estimate of KL(q(z|x) || p(z|x)))")
    lines.append(f"squared reconstruction error {m['reconstruction_error']:.3f}")
    for k, label in (("active_units", "active units"), ("probe_accuracy", "linear-probe accuracy")):
        if m.get(k) is not None:
            lines.append(f"{label} {m[k]:.4g}")
    lines.append(f"{m['n_examples']} examples")
    return "; ".join(lines)


def _load(args: argparse.Namespace):
    from .runs import load_run
    from .training.device import resolve_device

    return load_run(args.run, resolve_device(args.device))


def _data(args: argparse.Namespace, run, split: str | None = "test"):
    """The examples (with their labels and ids, where there are any) that a command reads;
    ``split`` None: every row of a file, the test split of a built-in dataset."""
    from .data.prepare import check_model_data, load_examples

    examples = load_examples(run.train_config, split, data=args.data, data_dir=args.data_dir,
                             data_shape=run.model_config.data_shape, data_info=run.info.get("data"),
                             id_column=getattr(args, "id_column", None))
    check_model_data(run.model, examples.x, _data_name(args, run))
    return examples


def _data_name(args: argparse.Namespace, run) -> str:
    """How a refusal names the data a command reads."""
    return args.data or f"dataset {run.train_config.data!r}"


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluation.metrics import evaluate_run

    run = _load(args)
    result = evaluate_run(run, split=args.split, data=args.data, data_dir=args.data_dir,
                          n_examples=args.n_examples, n_importance=args.n_importance, chunk_size=args.chunk_size,
                          batch_size=args.batch_size, seed=args.seed, probe=not args.no_probe)
    print(json.dumps(result) if args.json else _describe(result, run.model.headline))


def _cmd_sample(args: argparse.Namespace) -> None:
    import torch

    from .outputs import check_output_path, save_tensor

    check_output_path(args.output)
    run = _load(args)
    gen = torch.Generator(device=run.model.device).manual_seed(args.seed)
    conditions = {} if args.label is None else {"y": _label_index(args.label, run)}
    # passed only when asked, so that a model written without them still samples
    options = {k: v for k, v, usual in (("draw", args.draw, False), ("temperature", args.temperature, 1.0)) if v != usual}
    title = (("draws from" if args.draw else "means of") + " p(x|z), z ~ p(z)"
             + (f" at temperature {args.temperature:g}" if args.temperature != 1 else "")
             + (f", class {args.label}" if conditions else ""))
    samples = run.model.sample(args.n, generator=gen, **options, **conditions)
    save_tensor(_in_data_units(run, samples), args.output, title=title)
    print(args.output)


def _in_data_units(run, x):
    """Model outputs in the units of the data as given (a standardized table or array's
    standardization undone)."""
    from .data.prepare import undo_transform

    return undo_transform(run.info.get("data"), x)


def _label_index(label: str, run) -> int:
    """``--label``: a class's index, or its name among the run's classes."""
    from .errors import VaekitError

    if "y" not in run.model.conditions:
        raise VaekitError(f"--label {label}: the run's model ({run.model_config.model!r}) is not conditional; "
                          "train with --model cvae")
    classes = run.info.get("data", {}).get("classes") or []
    if label in classes:
        return classes.index(label)
    try:
        index = int(label)
    except ValueError:
        raise VaekitError(f"--label {label}: not a class of the run; its classes are "
                          f"{', '.join(classes) if classes else f'0-{run.model_config.n_classes - 1}'}") from None
    if not 0 <= index < run.model_config.n_classes:
        raise VaekitError(f"--label {label}: outside the run's {run.model_config.n_classes} classes "
                          f"0-{run.model_config.n_classes - 1}")
    return index


def _cmd_reconstruct(args: argparse.Namespace) -> None:
    from .outputs import check_output_path, save_tensor
    from .plots import PAIRED_ROWS_TITLE, paired_rows

    out = check_output_path(args.output)
    run = _load(args)
    device = run.model.device
    batch = next(_data(args, run, args.split).batches(args.n, device))  # the first n examples, with their labels
    x, recon = batch["x"], run.model.reconstruct(batch)
    if out.suffix.lower() == ".npy":
        save_tensor(_in_data_units(run, recon), out)
    else:
        tiles, cols = paired_rows(x, recon)
        save_tensor(tiles, out, nrow=cols, title=PAIRED_ROWS_TITLE.format("inputs"))
    print(args.output)


def _cmd_encode(args: argparse.Namespace) -> None:
    import torch

    from .evaluation.embed import encode
    from .outputs import check_output_path, save_table

    check_output_path(args.output, (".npy", ".csv"))
    _check_ids_output(args)
    run = _load(args)
    examples = _data(args, run, args.split)
    loc, scale = encode(run.model, examples, batch_size=args.batch_size)
    L = loc.shape[1]
    columns = [f"loc_{i}" for i in range(L)] + ([f"scale_{i}" for i in range(L)] if args.with_scale else [])
    values = torch.cat([loc, scale], 1) if args.with_scale else loc
    save_table(values, columns, args.output, ids=_ids(args, examples))
    print(f"{args.output}: {tuple(values.shape)}")


def _cmd_score(args: argparse.Namespace) -> None:
    import torch

    from .outputs import check_output_path, save_table
    from .evaluation.scores import anomaly_scores

    check_output_path(args.output, (".csv", ".npy"))
    _check_ids_output(args)
    run = _load(args)
    x = _data(args, run, args.split)
    scores = anomaly_scores(run.model, x, method=args.method, n_samples=args.n_samples,
                            batch_size=args.batch_size, seed=args.seed)
    ids = _ids(args, x)
    if args.contamination is None:
        save_table(scores.unsqueeze(1), ["score"], args.output, index=True, ids=ids)
    else:
        threshold = _score_threshold(args, run)
        labels = scores > threshold
        save_table(torch.stack([scores, labels.double()], 1), ["score", "label"], args.output, index=True, ids=ids)
        print(f"{args.output}: {int(labels.sum())} of {len(scores)} rows flagged as outliers (score above "
              f"{threshold:.2f}, the {1 - args.contamination:g} quantile of the run's training scores)")
    top = torch.argsort(scores, descending=True)[: min(5, len(scores))]
    name = (lambda i: ids[1][i]) if ids else str  # rows by their id when there are ids
    print(f"{args.output}: {len(scores)} scores ({args.method}); most unusual rows: "
          + ", ".join(f"{name(int(i))} ({float(scores[i]):.2f})" for i in top))


def _score_threshold(args: argparse.Namespace, run) -> float:
    """``--contamination C``: the (1 - C) quantile of the scores of the run's own training rows,
    scored as the data were (PyOD's ``threshold_``), so that a row's label does not depend on the
    other rows scored with it."""
    import numpy as np

    from .data.prepare import load_examples
    from .evaluation.scores import anomaly_scores

    train = load_examples(run.train_config, "train", data_dir=args.data_dir if args.data is None else None,
                          data_shape=run.model_config.data_shape, data_info=run.info.get("data"))
    reference = anomaly_scores(run.model, train, method=args.method, n_samples=args.n_samples,
                               batch_size=args.batch_size, seed=args.seed)
    return float(np.percentile(reference.numpy(), 100 * (1 - args.contamination)))


def _check_ids_output(args: argparse.Namespace) -> None:
    """``--id-column`` writes strings: only a .csv output holds them (checked before any work)."""
    from .errors import VaekitError

    if args.id_column is not None and Path(args.output).suffix.lower() != ".csv":
        raise VaekitError(f"--id-column {args.id_column}: ids are written to a .csv output; {args.output} holds "
                          "numbers only")


def _ids(args: argparse.Namespace, examples) -> tuple[str, list[str]] | None:
    """``(column name, ids)`` for the output when ``--id-column`` was given."""
    return None if args.id_column is None else (args.id_column, examples.ids)


def _cmd_interpolate(args: argparse.Namespace) -> None:
    from .evaluation.embed import interpolate_pairs
    from .outputs import check_output_path, save_tensor

    check_output_path(args.output)
    run = _load(args)
    lines, pairs = interpolate_pairs(run.model, _data(args, run, args.split), pairs=args.pairs, steps=args.steps,
                                     seed=args.seed, what=_data_name(args, run))
    save_tensor(_in_data_units(run, lines), args.output, nrow=args.steps,
                title="decoded straight lines between latent means")
    print(f"{args.output}: lines between examples " + ", ".join(f"{a} and {b}" for a, b in pairs.tolist()))


def _cmd_plot(args: argparse.Namespace) -> None:
    from . import figures
    from .outputs import check_output_path

    out = check_output_path(args.output, figures.SUFFIXES)
    run = _load(args)
    fig = figures.make_figure(run, args.kind, data=args.data, data_dir=args.data_dir, seed=args.seed,
                              temperature=args.temperature, n=args.n, projection=args.projection)
    figures.save_figure(fig, out)
    print(out)


def _cmd_report(args: argparse.Namespace) -> None:
    from .report import check_inputs, write_report
    from .training.device import resolve_device

    check_inputs(args.runs, args.output)  # a bad path answers before any run is loaded
    out = write_report(args.runs, args.output, n_importance=args.n_importance, data=args.data, data_dir=args.data_dir,
                       seed=args.seed, device=resolve_device(args.device), figures=not args.no_figures)
    print(f"{out}: report of {len(args.runs)} run{'s' if len(args.runs) > 1 else ''} "
          f"({out.stat().st_size / 1024:.0f} KiB)")


def _cmd_export(args: argparse.Namespace) -> None:
    import importlib.util

    from .errors import VaekitError

    if importlib.util.find_spec("onnx") is None:
        raise VaekitError("vaekit export --format onnx needs onnx, not installed: pip install 'vaekit[onnx]'")
    from .export import check_out_dir, export_onnx
    from .runs import load_run

    check_out_dir(args.output)  # a bad folder answers before the run is loaded
    paths = export_onnx(load_run(args.run, "cpu"), args.output)
    print(f"{args.output}: " + ", ".join(p.name for p in paths))


def _cmd_serve(args: argparse.Namespace) -> None:
    import importlib.util

    from .errors import VaekitError

    needed = {"starlette": ("starlette",), "uvicorn": ("uvicorn",), "python-multipart": ("python_multipart", "multipart")}
    missing = [name for name, modules in needed.items() if not any(importlib.util.find_spec(m) for m in modules)]
    if missing:
        raise VaekitError(f"vaekit serve needs {', '.join(missing)}, not installed: pip install 'vaekit[serve]'")
    from .serve import serve
    from .training.device import resolve_device

    serve(args.run, args.host, args.port, device=resolve_device(args.device))


COMMANDS = {
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "sample": _cmd_sample,
    "reconstruct": _cmd_reconstruct,
    "encode": _cmd_encode,
    "score": _cmd_score,
    "interpolate": _cmd_interpolate,
    "plot": _cmd_plot,
    "report": _cmd_report,
    "serve": _cmd_serve,
    "export": _cmd_export,
}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A vaekit warning as one line on stderr, ``vaekit: warning: ...``; others as Python shows them."""
    from .errors import VaekitWarning

    if issubclass(category, VaekitWarning):
        print(f"vaekit: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vaekit`` and ``python -m vaekit``; returns the exit status.

    Under torchrun (``WORLD_SIZE`` > 1) a process ends here, its output flushed and its files
    written, without the interpreter's finalization: there gloo's threads abort a process now and
    then ("terminate called without an active exception", pytorch#179291)."""
    code = _main(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv: Sequence[str] | None = None) -> int:
    from .errors import VaekitError, VaekitWarning

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset")
    known, _ = pre.parse_known_args(argv)  # a preset sets train's defaults before the real parse
    args = build_parser(known.preset).parse_args(argv)
    if args.command == "train" and args.resume:
        args.given = _given_options(argv)
    talk = logging.StreamHandler(sys.stderr)  # what the library says as it works, a plain line each
    talk.setFormatter(logging.Formatter("vaekit: %(message)s"))
    logger = logging.getLogger("vaekit")
    logger.addHandler(talk)
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", VaekitWarning)  # once a command (the report reads the data again)
            warnings.showwarning = _show_warning
            COMMANDS[args.command](args)
    except VaekitError as e:
        print(f"vaekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        line = str(e) if isinstance(e, _Stopped) else "interrupted"
        if line:  # under torchrun, one process speaks
            print(f"vaekit: {line}", file=sys.stderr)
        return getattr(e, "status", 130)
    finally:
        logger.removeHandler(talk)
    return 0
