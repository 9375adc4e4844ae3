"""Flat, typed configurations, saved as JSON in every run directory beside the weights.

One name per setting everywhere: ``latent_dim`` here, ``latent_dim=`` in Python and
``--latent-dim`` on the command line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import VaekitError


@dataclass
class ModelConfig:
    """What is needed to rebuild a model: the networks, the latent size and the likelihood."""

    data_shape: tuple[int, ...] = ()  # per-example shape; () means "take it from the data"
    model: str = "vae"  # vae | ae | pca (see vaekit.models.MODELS)
    latent_dim: int | None = None  # None: chosen from the data (sized())
    arch: str = "mlp"  # mlp | conv | linear (see vaekit.models.networks.ARCHS)
    # None: chosen from the data (sized()); for MNIST that is 784-1024-512-32, which reaches a
    # test ELBO above -100 nats on binarized MNIST in 10 epochs (benchmarks/RESULTS.md)
    hidden: tuple[int, ...] | None = None
    conv_channels: tuple[int, ...] = (32, 64)
    activation: str = "relu"  # relu | tanh, after every hidden layer
    prior: str = "standard"  # see vaekit.models.priors.PRIORS
    prior_components: int = 10  # mixture components, for the mog and vamp priors
    n_classes: int = 0  # labels a conditional model (cvae) is conditioned on; set from the data
    # two stochastic layers: (z1 near the data, z2 on top), e.g. (100, 50) (Burda et al. 2015);
    # () for one layer of latent_dim. hidden_top: the MLPs between z1 and z2, both ways
    latent_dims: tuple[int, ...] = ()
    hidden_top: tuple[int, ...] = (100, 100)
    likelihood: str = "auto"  # see vaekit.models.likelihoods.LIKELIHOODS; auto: chosen from the data by train()
    gaussian_variance: float = 0.1  # c in p(x|z) = N(f(z), c I); start value for gaussian-learned

    def __post_init__(self) -> None:
        self.data_shape = tuple(int(d) for d in self.data_shape)
        self.hidden = None if self.hidden is None else tuple(int(h) for h in self.hidden)
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        self.latent_dims = tuple(int(d) for d in self.latent_dims)
        self.hidden_top = tuple(int(h) for h in self.hidden_top)
        if self.latent_dims:  # z1 is the latent the data see: encode, embeddings, active units
            self.latent_dim = self.latent_dims[0]


@dataclass
class TrainConfig:
    """How a model was trained: data, optimizer and schedule, seed, device."""

    data: str = "digits"  # a built-in dataset, or a .npy/.npz/.csv/.tsv file or a folder of images
    data_dir: str | None = None
    label_column: str | None = None  # a table's column of labels (name, or index without header)
    id_column: str | None = None  # a table's column naming the rows: kept out of the features
    image_size: tuple[int, int] | None = None  # resize a folder's images to H x W
    grayscale: bool = False  # read a folder's images as one channel
    memmap: bool | None = None  # read a .npy lazily (None: when it is larger than 1 GiB)
    binarize: str = "none"  # none | dynamic | static
    # None: chosen from the data (sized()): the batch by the number of examples, the epochs from
    # a budget of max_steps optimizer steps, early stopping after `patience` epochs (0: never)
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    seed: int = 0
    val_fraction: float = 0.1
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    # the training objective: elbo, or the importance-weighted bound with n_samples draws per
    # example (iwae, Burda et al. 2015), or the same with the doubly reparameterized encoder
    # gradient (dreg, Tucker et al. 2019)
    objective: str = "elbo"
    n_samples: int = 1
    # the KL weight: only beta = 1 with no free bits trains on the ELBO itself
    beta: float = 1.0
    kl_warmup_steps: int = 0  # beta ramps linearly from 0 over this many steps
    free_bits: float = 0.0  # nats per latent dimension (Kingma et al. 2016)
    # the learning rate
    lr_schedule: str = "constant"  # constant | cosine | step | burda
    lr_warmup_steps: int = 0
    lr_step_epochs: int = 30  # for step: multiply by lr_gamma every this many epochs
    lr_gamma: float = 0.1
    patience: int | None = None  # early stopping: epochs without a better validation figure (0: never)
    max_seconds: float | None = None  # stop at the end of the first epoch past this much time (each call)
    grad_clip: float | None = None  # clip the gradient's norm
    on_nan: str = "stop"  # stop | skip: a non-finite loss or gradient
    checkpoint_every: int | None = None  # steps between mid-epoch checkpoints (besides every epoch)
    tensorboard: bool = False
    preset: str | None = None  # the preset the run started from (vaekit.config.PRESETS), for the record

    def __post_init__(self) -> None:
        if self.image_size is not None:
            self.image_size = tuple(int(d) for d in self.image_size)


#: Burda et al. (2015)'s protocol for dynamically binarized MNIST (section 5 and appendix):
#: tanh MLPs, Adam with beta2 0.999 and eps 1e-4, batches of 20, 3280 epochs in stages of 3^i
#: epochs at 1e-3 * 10^(-i/7), the output bias at the data's mean (vaekit always starts there).
#: ``vaekit train --preset NAME`` takes these as its defaults; every flag overrides its own.
_BURDA_TRAIN = {"batch_size": 20, "lr": 1e-3, "adam_beta2": 0.999, "adam_eps": 1e-4, "lr_schedule": "burda",
                "epochs": 3280, "binarize": "dynamic", "patience": 0}  # the whole schedule: no early stopping
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "burda-1layer": {  # 784-200-200-50
        "model": {"hidden": (200, 200), "latent_dim": 50, "activation": "tanh", "likelihood": "bernoulli"},
        "train": _BURDA_TRAIN,
    },
    "burda-2layer": {  # 784-200-200-100 (z1) -100-100-50 (z2)
        "model": {"hidden": (200, 200), "latent_dims": (100, 50), "hidden_top": (100, 100), "activation": "tanh",
                  "likelihood": "bernoulli"},
        "train": _BURDA_TRAIN,
    },
}

# -- defaults chosen from the data ---------------------------------------------------------------
# The rule (README, "Defaults from the data"): with D values per example and N training examples,
# latent size min(D, 32); an MLP of widths (w, max(w/2, 128)) with w the power of two at or above
# 8 D, between 128 and 1024; batches of N/64 rounded down to a power of two, between 16 and 128;
# a budget of 20000 optimizer steps in whole epochs; early stopping after 10 epochs (and at least
# 2500 steps) without a better validation figure.
STEP_BUDGET = 20_000
PATIENCE = 10
PATIENCE_STEPS = 2_500


def _pow2_at_least(v: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(v, 1))))


def size_model(cfg: ModelConfig) -> tuple[ModelConfig, list[str]]:
    """``cfg`` with its unset sizes (``latent_dim``, ``hidden``) chosen from ``data_shape``,
    and a line on each choice."""
    if cfg.latent_dim is not None and cfg.hidden is not None:
        return cfg, []
    if not cfg.data_shape:
        raise VaekitError("the model's sizes are chosen from data_shape: set data_shape (or latent_dim and hidden)")
    d, why, changes = math.prod(cfg.data_shape), [], {}
    if cfg.latent_dim is None:
        changes["latent_dim"] = min(d, 32)
        why.append(f"latent size {changes['latent_dim']} = min(D, 32)")
    if cfg.hidden is None:
        w = min(1024, max(128, _pow2_at_least(8 * d)))
        changes["hidden"] = (w, max(w // 2, 128))
        why.append(f"hidden widths {changes['hidden'][0]}, {changes['hidden'][1]} (from 8 D = {8 * d})")
    return dataclasses.replace(cfg, **changes), why


def size_training(cfg: TrainConfig, n_train: int, has_val: bool) -> tuple[TrainConfig, list[str]]:
    """``cfg`` with its unset batch size, length and patience chosen from the number of training
    examples, and a line on each choice."""
    changes: dict[str, Any] = {}
    why: list[str] = []
    batch = cfg.batch_size
    if batch is None:
        batch = changes["batch_size"] = min(128, max(16, 1 << max(0, int(math.log2(max(n_train / 64, 1))))))
        why.append(f"batch {batch} (from N/64 = {n_train / 64:.0f})")
    if cfg.epochs is None:
        steps = cfg.max_steps if cfg.max_steps is not None else STEP_BUDGET
        per_epoch = max(1, math.ceil(n_train / batch))
        changes["epochs"] = max(1, math.ceil(steps / per_epoch))
        changes["max_steps"] = steps
        why.append(f"at most {changes['epochs']} epochs ({steps} steps of {per_epoch} an epoch)")
    if cfg.patience is None:
        per_epoch = max(1, math.ceil(n_train / batch))
        changes["patience"] = max(PATIENCE, math.ceil(PATIENCE_STEPS / per_epoch)) if has_val else 0
        if has_val:
            why.append(f"early stopping after {changes['patience']} epochs without a better validation figure "
                       f"(at least {PATIENCE} epochs and {PATIENCE_STEPS} steps)")
    return dataclasses.replace(cfg, **changes), why


BINARIZE_MODES = ("none", "dynamic", "static")
OBJECTIVES = ("elbo", "iwae", "dreg")
LR_SCHEDULES = ("constant", "cosine", "step", "burda")

# The built-in names of each registry, here (torch-free) so that ``vaekit --help`` lists them
# without importing torch; tests/test_cli_startup.py checks them against the registries.
MODEL_NAMES = ("ae", "cvae", "pca", "vae")  # vaekit.models.MODELS
PRIOR_NAMES = ("mog", "standard", "vamp")  # vaekit.models.PRIORS
# vaekit.models.likelihoods
LIKELIHOOD_NAMES = ("bernoulli", "continuous-bernoulli", "gaussian", "gaussian-learned", "gaussian-lowrank")
ARCH_NAMES = ("conv", "linear", "mlp", "resnet")  # vaekit.models.networks.ARCHS
DATASET_NAMES = ("digits", "fashion-mnist", "mnist")  # vaekit.data.builtin.DATASETS


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass as a JSON-ready dict (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]):
    """Rebuild a config dataclass, ignoring keys it does not know (forward compatibility)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


__all__ = ["ModelConfig", "TrainConfig", "ARCH_NAMES", "BINARIZE_MODES", "DATASET_NAMES", "LIKELIHOOD_NAMES",
           "LR_SCHEDULES", "MODEL_NAMES", "OBJECTIVES", "PRESETS", "PRIOR_NAMES", "PATIENCE", "STEP_BUDGET", "size_model",
           "size_training", "to_dict", "from_dict"]
