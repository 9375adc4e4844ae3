"""The ``vaekit`` command: it parses arguments and dispatches to the library, nothing more.

Bad input ends in one line on stderr, ``vaekit: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import dataclasses

from .config import BINARIZE_MODES, OBJECTIVES, PRESETS, ModelConfig, TrainConfig

_MODEL_DEFAULTS = ModelConfig()
_TRAIN_DEFAULTS = TrainConfig()


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive finite number")
    return value


def _add_data(p: argparse.ArgumentParser, default: str | None) -> None:
    from .data.builtin import DATASETS

    names = ", ".join(sorted(DATASETS))
    p.add_argument("--data", default=default, metavar="NAME|PATH",
                   help=f"a built-in dataset ({names}), or your data: a .npy/.npz array (N x D, N x H x W or "
                   "N x C x H x W), a .csv/.tsv table of numbers, or a folder of PNG/JPEG images (one subfolder per "
                   "class gives labels)" + (f" (default: {default})" if default else " (default: the run's data, "
                   "read and transformed as in training)"))
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding the dataset's files (default: $VAEKIT_DATA/NAME, else the cache, "
                   "downloading there if needed)")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to compute (default: auto, CUDA then MPS then CPU)")


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``preset`` (a key of ``vaekit.config.PRESETS``) ``train``'s
    defaults are the preset's, so every flag given still overrides its own."""
    from .models import MODELS, PRIORS
    from .models.likelihoods import LIKELIHOODS
    from .models.networks import ARCHS
    from .training.schedules import LR_SCHEDULES

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
    p.add_argument("--image-size", type=_positive_int, nargs=2, metavar=("H", "W"),
                   help="resize a folder's images to H x W (needed when their sizes differ)")
    p.add_argument("--grayscale", action="store_true", help="read a folder's images as one channel")
    p.add_argument("--memmap", action=argparse.BooleanOptionalAction, default=None,
                   help="read a .npy lazily, a batch at a time, so it never has to fit in memory "
                   "(default: when the file is larger than 1 GiB)")
    p.add_argument("--run-dir", metavar="DIR", help="where to write the run (default: runs/DATA-DATE-TIME); must not hold a run")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help=f"passes over the training set (default: {_TRAIN_DEFAULTS.epochs}; with --resume, the run's own)")
    p.add_argument("--model", default=_MODEL_DEFAULTS.model, choices=sorted(MODELS),
                   help="vae; cvae, a conditional VAE on the data's labels (q(z|x,y), p(x|z,y); sample draws a "
                   "class with --label); or a baseline at the same latent size: ae (the same networks, no sampling, "
                   "no KL) or pca (closed form, read as probabilistic PCA) (default: %(default)s)")
    p.add_argument("--prior", default=_MODEL_DEFAULTS.prior, choices=sorted(PRIORS),
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
    p.add_argument("--latent-dim", type=_positive_int, default=_MODEL_DEFAULTS.latent_dim, help="size of z (default: %(default)s)")
    p.add_argument("--likelihood", default=_MODEL_DEFAULTS.likelihood, choices=["auto", *sorted(LIKELIHOODS)],
                   help="p(x|z): bernoulli (cross-entropy), continuous-bernoulli, gaussian (fixed variance "
                   "--gaussian-variance, the weighted L2 loss), gaussian-learned (a learned variance per dimension); "
                   "auto: bernoulli for images and arrays in [0, 1], gaussian-learned for tables and other values "
                   "(default: %(default)s; the choice is printed)")
    p.add_argument("--gaussian-variance", type=_positive_float, default=_MODEL_DEFAULTS.gaussian_variance,
                   help="c in p(x|z) = N(f(z), c I); the start value for gaussian-learned (default: %(default)s)")
    p.add_argument("--arch", default=_MODEL_DEFAULTS.arch, choices=sorted(ARCHS),
                   help="networks: mlp, conv (images), resnet (residual convolutions, images), linear (probabilistic "
                   "PCA with gaussian) (default: %(default)s)")
    p.add_argument("--hidden", type=_positive_int, nargs="+", default=list(_MODEL_DEFAULTS.hidden), metavar="N",
                   help="hidden layer widths of the encoder trunk, mirrored in the decoder; for conv the dense "
                   "width (default: %(default)s)")
    p.add_argument("--activation", default=_MODEL_DEFAULTS.activation, choices=["relu", "tanh"],
                   help="after every hidden layer (default: %(default)s)")
    p.add_argument("--conv-channels", type=_positive_int, nargs="+", default=list(_MODEL_DEFAULTS.conv_channels),
                   metavar="N", help="channels of the stride-2 convolutions, for --arch conv (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=_TRAIN_DEFAULTS.batch_size, help="examples per step (default: %(default)s)")
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
    g.add_argument("--patience", type=_positive_int, metavar="E",
                   help="stop after E epochs without a better validation figure (never during KL warm-up)")
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
                   help="continue RUN from its last checkpoint (its own config; --epochs may extend it)")
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

    p = sub.add_parser("sample", help="generate from the prior", description="Decode z ~ N(0, I): means of p(x|z).")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("-n", type=_positive_int, default=64, help="how many samples (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="a .png grid or a .npy array")
    p.add_argument("--seed", type=int, default=0, help="seed of z (default: %(default)s)")
    p.add_argument("--label", metavar="CLASS",
                   help="for a conditional model (--model cvae): draw this class, by its index or its name")
    _add_device(p)

    p = sub.add_parser("reconstruct", help="encode and decode held-out data",
                       description="Images (top) and the means of p(x|z) at z = E_q[z] (bottom).")
    p.add_argument("run", metavar="RUN", help="a run directory")
    _add_data(p, None)
    p.add_argument("-n", type=_positive_int, default=32, help="how many examples (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="a .png grid or a .npy array of reconstructions")
    _add_device(p)

    p = sub.add_parser("encode", help="latent means of data (dimensionality reduction)",
                       description="Write E_q[z|x] for every example, in the data's order.")
    p.add_argument("run", metavar="RUN", help="a run directory")
    _add_data(p, None)
    p.add_argument("--split", default="test", choices=["train", "test", "all"], help="which part of a built-in dataset (default: test)")
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
    p.add_argument("--split", default="test", choices=["train", "test", "all"], help="which part of a built-in dataset (default: test)")
    p.add_argument("--method", default="elbo", choices=["elbo", "iw"], help="negative ELBO or negative log p(x) (default: %(default)s)")
    p.add_argument("--n-samples", type=_positive_int, default=10, metavar="K",
                   help="samples of q(z|x) per example (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="a .csv (columns index, score) or a .npy")
    p.add_argument("--batch-size", type=_positive_int, default=100,
                   help="examples per batch for --method elbo; iw sizes its batches to bound memory (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default: %(default)s)")
    _add_device(p)

    p = sub.add_parser("interpolate", help="decode straight lines between latent means",
                       description="For pairs of held-out examples, decode points on the line between their latent means.")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("--pairs", type=_positive_int, default=8, help="how many pairs, one row each (default: %(default)s)")
    p.add_argument("--steps", type=_positive_int, default=10, help="points per line, ends included (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="a .png grid or a .npy array")
    _add_device(p)
    return parser


# -- handlers: each parses nothing and does nothing the library could not do ------------------

def _cmd_train(args: argparse.Namespace) -> None:
    import datetime as dt

    from .training import resume, train

    if args.resume:
        run_dir = args.resume
        model, summary = resume(run_dir, epochs=args.epochs)
    else:
        run_dir = args.run_dir or f"runs/{Path(args.data).name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
        model_config, train_config = configs_from_args(args)
        model, summary = train(model_config, train_config, run_dir)
    from .training.distributed import world_from_env

    if not world_from_env().is_main:
        return  # one process speaks for a torchrun launch
    print(f"run directory: {run_dir}")
    chosen = json.loads((Path(run_dir) / "config.json").read_text())["data"].get("likelihood_chosen")
    if chosen:
        print(f"likelihood: {chosen}; set --likelihood to change")
    print(_describe(summary, model.headline))
    figures = [str(f) for f in (Path(run_dir) / "reconstructions.png", Path(run_dir) / "samples.png") if f.exists()]
    if figures:  # data that are not images have none
        print(f"figures: {', '.join(figures)}")


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


def _data(args: argparse.Namespace, run, split: str = "test"):
    """The examples (with their labels, where there are any) that a command reads."""
    from .data.prepare import check_model_data, load_examples

    examples = load_examples(run.train_config, split, data=args.data, data_dir=args.data_dir,
                             data_shape=run.model_config.data_shape, data_info=run.info.get("data"))
    check_model_data(run.model, examples.x, args.data or f"dataset {run.train_config.data!r}")
    return examples


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
    title = "means of p(x|z), z ~ p(z)" + (f", class {args.label}" if conditions else "")
    save_tensor(run.model.sample(args.n, generator=gen, **conditions), args.output, title=title)
    print(args.output)


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
    import torch

    from .outputs import check_output_path, save_tensor

    out = check_output_path(args.output)
    run = _load(args)
    device = run.model.device
    batch = next(_data(args, run).batches(args.n, device))  # the first n examples, with their labels
    x, recon = batch["x"], run.model.reconstruct(batch)
    if out.suffix.lower() == ".npy":
        save_tensor(recon, out)
    else:
        save_tensor(torch.cat([x, recon]), out, title="inputs (top) and reconstructions (bottom)")
    print(args.output)


def _cmd_encode(args: argparse.Namespace) -> None:
    import torch

    from .evaluation.embed import encode
    from .outputs import check_output_path, save_table

    check_output_path(args.output, (".npy", ".csv"))
    run = _load(args)
    loc, scale = encode(run.model, _data(args, run, args.split), batch_size=args.batch_size)
    L = loc.shape[1]
    columns = [f"loc_{i}" for i in range(L)] + ([f"scale_{i}" for i in range(L)] if args.with_scale else [])
    values = torch.cat([loc, scale], 1) if args.with_scale else loc
    save_table(values, columns, args.output)
    print(f"{args.output}: {tuple(values.shape)}")


def _cmd_score(args: argparse.Namespace) -> None:
    import torch

    from .outputs import check_output_path, save_table
    from .evaluation.scores import anomaly_scores

    check_output_path(args.output, (".csv", ".npy"))
    run = _load(args)
    x = _data(args, run, args.split)
    scores = anomaly_scores(run.model, x, method=args.method, n_samples=args.n_samples,
                            batch_size=args.batch_size, seed=args.seed)
    save_table(scores.unsqueeze(1), ["score"], args.output, index=True)
    top = torch.argsort(scores, descending=True)[: min(5, len(scores))]
    print(f"{args.output}: {len(scores)} scores ({args.method}); most unusual rows: "
          + ", ".join(f"{int(i)} ({float(scores[i]):.2f})" for i in top))


def _cmd_interpolate(args: argparse.Namespace) -> None:
    import torch

    from .outputs import check_output_path, save_tensor

    check_output_path(args.output)
    run = _load(args)
    device = run.model.device
    args.data = args.data_dir = None
    x = next(_data(args, run).batches(2 * args.pairs, device))["x"]
    rows = [run.model.interpolate(x[i], x[i + 1], args.steps) for i in range(0, len(x) - 1, 2)]
    save_tensor(torch.cat(rows), args.output, nrow=args.steps, title="decoded straight lines between latent means")
    print(args.output)


COMMANDS = {
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "sample": _cmd_sample,
    "reconstruct": _cmd_reconstruct,
    "encode": _cmd_encode,
    "score": _cmd_score,
    "interpolate": _cmd_interpolate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vaekit`` and ``python -m vaekit``; returns the exit status."""
    from .errors import VaekitError

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset")
    known, _ = pre.parse_known_args(argv)  # a preset sets train's defaults before the real parse
    args = build_parser(known.preset).parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except VaekitError as e:
        print(f"vaekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130
    return 0
