"""The models by name: ``ModelConfig.model`` picks one, ``register_model`` adds one."""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import ModelConfig
from ..errors import VaekitError
from .protocol import check_model

MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {}
#: models conditioned on the labels of their data: the training job sets ``n_classes`` for them
NEEDS_LABELS: set[str] = set()


def register_model(name: str, *, needs_labels: bool = False):
    """Decorator adding a model builder ``fn(config)`` (or a class) to :data:`MODELS` under
    ``name``; ``needs_labels`` for a model conditioned on the data's labels."""

    def wrap(cls):
        MODELS[name] = cls
        if needs_labels:
            NEEDS_LABELS.add(name)
        return cls

    return wrap


def build_model(config: ModelConfig) -> nn.Module:
    """The model that ``config.model`` names, built from ``config`` and checked against the
    :class:`~vaekit.models.Model` protocol."""
    if config.model not in MODELS:
        raise VaekitError(f"unknown model {config.model!r}; choose one of: {', '.join(sorted(MODELS))}")
    model = MODELS[config.model](config)
    check_model(model)
    return model
