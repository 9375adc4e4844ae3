"""Figures of a trained run, one library function each, for images and for tables.

Every figure is a :class:`matplotlib.figure.Figure` built without pyplot (nothing global to
close), sized to be read at :data:`DPI`; :func:`save_figure` writes it as .png or .svg. Images
are shown as tile grids; tables (and any data that are not images) as plots per feature, in the
data's own units (a standardized table's standardization undone), the first
:data:`MAX_FEATURES` features of a wider table.

- :data:`KINDS`: the kinds, each with the one sentence saying what it shows (a caption);
- :func:`applicable`: the kinds that apply to a run;
- :func:`make_figure`: one figure of a run;
- :func:`save_figure`: write it.

The held-out data are the run's test split (the validation part of a run's own file), or
``data``; ``seed`` chooses the examples, the pairs and the prior's draws, so the same seed draws
the same figure.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, Patch
from torch import Tensor

from .errors import VaekitError
from .plots import PAIRED_ROWS_TITLE, image_grid, is_image_shape, paired_rows
from .runs import METRICS, read_metrics

#: kind -> one sentence on what the figure shows (a report's caption)
KINDS: dict[str, str] = {
    "reconstructions": "Held-out inputs beside their reconstructions, the means of p(x|z) at z = E[q(z|x)]: "
                       "what the code keeps of each input.",
    "samples": "Decoded draws z ~ p(z) from the prior, at the given temperature: whether every region of the "
               "prior decodes to data-like examples.",
    "interpolations": "Decoded paths between the latent means of pairs of held-out examples, along a straight "
                      "line and along a great circle (spherical): whether the latent space is continuous.",
    "latent": "The latent means of held-out examples coloured by label (projected to 2-D when the latent has more "
              "dimensions), with the 1-sigma ellipses of q(z|x) of a few: how the data fill the latent space.",
    "manifold": "A grid over a 2-D latent space at the quantiles of the prior, decoded (Kingma and Welling 2014, "
                "figure 4): what each region of the latent space generates.",
    "traversals": "One latent unit at a time varied from -3 to +3 prior standard deviations around the encoding "
                  "of a held-out example, the most active units first: what each unit controls.",
    "kl-per-unit": "The mean KL(q(z_j|x) || p(z_j)) of each latent unit on held-out data, with the 0.01 threshold "
                   "of an active unit: which units carry information and which collapsed to the prior.",
    "curves": "The objective, its reconstruction and KL terms, the KL weight beta and the learning rate against "
              "the optimizer step, for the training and validation data (metrics.csv).",
}

#: the figure files :func:`save_figure` writes
SUFFIXES = (".png", ".svg")
#: dots per inch of a PNG: a figure of W x H inches is W*DPI x H*DPI pixels
DPI = 120
#: the most features a table's figures plot, one panel each (the first ones of a wider table)
MAX_FEATURES = 16
#: the threshold of an active unit, in Cov_x(E_q[z_j]) (as ``estimators.active_units``) and in nats
ACTIVE_THRESHOLD = 0.01

_INCHES_PER_TILE = 0.6
_MAX_WIDTH, _MAX_HEIGHT = 12.0, 13.0


# -- what one figure reads -------------------------------------------------------------------------

class _Inputs:
    """A run, its held-out examples (read once, when first needed) and the seed."""

    def __init__(self, run, data: str | None, data_dir: str | os.PathLike | None, seed: int):
        self.run, self.model = run, run.model
        self.data, self.data_dir, self.seed = data, data_dir, seed
        self._examples = None

    @property
    def held(self) -> str:
        """How titles name the data: ``held-out``, or the name of the ``data`` given."""
        return "held-out" if self.data is None else Path(self.data).name

    @property
    def info(self) -> dict[str, Any]:
        return self.run.info.get("data") or {}

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.run.model_config.data_shape)

    @property
    def images(self) -> bool:
        return is_image_shape(self.data_shape)

    @property
    def latent_dim(self) -> int:
        return int(self.model.config.latent_dim)

    @property
    def conditional(self) -> bool:
        return "y" in getattr(self.model, "conditions", ())

    @property
    def device(self) -> torch.device:
        return self.model.device

    def examples(self):
        """The held-out examples, read and transformed as in training, checked against the model."""
        if self._examples is None:
            from .data.prepare import check_model_data, load_examples

            name = self.data or f"dataset {self.run.train_config.data!r}"
            examples = load_examples(self.run.train_config, "test", data=self.data, data_dir=self.data_dir,
                                     data_shape=self.data_shape, data_info=self.run.info.get("data"))
            if len(examples) == 0:
                raise VaekitError(f"{name}: no held-out examples to draw")
            check_model_data(self.model, examples.x, name)
            self._examples = examples
        return self._examples

    def pick(self, n: int):
        """``min(n, all)`` held-out examples chosen at random by the seed, in the data's order."""
        examples = self.examples()
        if n >= len(examples):
            return examples
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(self.seed))
        return examples.subset(order[:n].sort().values)

    def batch(self, examples) -> dict[str, Tensor]:
        """All of ``examples`` as one batch on the model's device."""
        return {k: v.to(self.device) for k, v in examples[0:len(examples)].items()}

    def encode(self, examples, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
        """``(loc, scale)`` of q(z|x), on the CPU."""
        from .evaluation.embed import encode

        return encode(self.model, examples, batch_size=batch_size)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Means of p(x|z) (given labels ``y`` for a conditional model), on the CPU."""
        batch = None if y is None else {"y": y.to(self.device)}
        return self.model.decode(z.to(self.device), batch).mean.detach().float().cpu()

    # -- the data's units -----------------------------------------------------------------------------
    def features(self) -> list[str]:
        """Names of the values of an example: a table's columns, else ``x0``, ``x1``, ..."""
        d = math.prod(self.data_shape)
        columns = self.info.get("columns")
        return list(columns) if columns and len(columns) == d else [f"x{i}" for i in range(d)]

    def shown(self) -> tuple[list[int], str]:
        """The features a table's figure plots, and a note when they are not all of them."""
        names = self.features()
        k = min(len(names), MAX_FEATURES)
        return list(range(k)), ("" if k == len(names) else f" (the first {k} of {len(names)} features)")

    def values(self, x: Tensor) -> np.ndarray:
        """``(N, D)`` values of examples ``x`` in the data's own units."""
        from .data.prepare import undo_transform

        x = undo_transform(self.info, x.detach().float().cpu())
        return x.reshape(len(x), -1).numpy()

    def tiles(self, x: Tensor) -> Tensor:
        """Images ``x`` as tiles in [0, 1]: images in [0, 1] as they are (clipped there), images
        that were standardized back in their units and scaled to [0, 1]."""
        from .data.prepare import undo_transform

        if (self.info.get("transform") or {}).get("kind", "none") == "none":
            return x.detach().float().cpu().clamp(0, 1)
        x = undo_transform(self.info, x.detach().float().cpu())
        lo, hi = float(x.min()), float(x.max())
        return (x - lo) / (hi - lo) if hi > lo else x.clamp(0, 1)

    def class_names(self) -> list[str]:
        classes = self.info.get("classes") or []
        n = max(len(classes), int(getattr(self.model.config, "n_classes", 0) or 0))
        return [classes[i] if i < len(classes) else str(i) for i in range(n)]

    def reference(self) -> tuple[Tensor, Tensor, str]:
        """Centre and spread of the decoded latent per unit, on the CPU, and what they are: p(z)'s
        mean and standard deviation, or those of the held-out codes where p(z) is not the law of the
        decoded latent (an autoencoder's codes follow none; two stochastic layers decode z1)."""
        config = self.model.config
        if config.model != "ae" and not getattr(config, "latent_dims", None):
            pz = self.model.prior()
            if tuple(pz.event_shape) == (self.latent_dim,):
                return pz.mean.detach().float().cpu(), pz.stddev.detach().float().cpu(), "p(z)"
        loc, _ = self.encode(self.pick(2000))
        spread = loc.std(0).clamp_min(1e-6) if len(loc) > 1 else torch.ones(self.latent_dim)
        return loc.mean(0), spread, f"the {self.held} codes"


# -- drawing helpers -------------------------------------------------------------------------------

def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(min(width, _MAX_WIDTH), min(height, _MAX_HEIGHT)), dpi=DPI, layout="constrained")


def _tile_inches(rows: int, cols: int, extra_w: float = 1.2, extra_h: float = 1.0) -> float:
    """Inches per tile so that a grid of ``rows`` x ``cols`` tiles fits the largest figure."""
    return min(_INCHES_PER_TILE, (_MAX_WIDTH - extra_w) / cols, (_MAX_HEIGHT - extra_h) / rows)


def _grid(ax, tiles: Tensor, cols: int, *, row_labels: list[str] | None = None,
          col_labels: list[str] | None = None, title: str | None = None, pad: int = 1) -> None:
    """Show ``(N, C, H, W)`` tiles in [0, 1] as one image of ``cols`` columns (``pad`` white pixels
    apart), labelled by row and column."""
    arr = image_grid(tiles, cols, pad)
    ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    h, w = tiles.shape[2:]
    rows = math.ceil(len(tiles) / cols)
    ax.set_xticks([pad + k * (w + pad) + (w - 1) / 2 for k in range(cols)] if col_labels else [],
                  col_labels or [], fontsize=8)
    ax.set_yticks([pad + r * (h + pad) + (h - 1) / 2 for r in range(rows)] if row_labels else [],
                  row_labels or [], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)


def _panels(n: int, width: float = 2.9, height: float = 2.4, extra_h: float = 0.8,
            per_row: int = 4) -> tuple[Figure, list]:
    """A figure of ``n`` panels (up to ``per_row`` a row), exactly ``n`` axes."""
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    fig = _figure(max(5.0, cols * width), rows * height + extra_h)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def _label(ax, title: str, xlabel: str, ylabel: str) -> None:
    """A per-feature panel's title and axis labels, at the sizes every panel uses."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)


def _suptitle(fig: Figure, text: str) -> None:
    fig.suptitle(text, fontsize=11)


def _generator(inputs: _Inputs) -> torch.Generator:
    return torch.Generator(device=inputs.device).manual_seed(inputs.seed)


def _sigma_label(v: float) -> str:
    return "0" if abs(v) < 1e-9 else f"{v:+.3g}σ".replace("-", "\u2212")


# -- the figures ------------------------------------------------------------------------------------

@torch.inference_mode()
def reconstructions(inputs: _Inputs, n: int | None = None) -> Figure:
    """Held-out inputs and their reconstructions: for images each row of inputs above the row of its
    reconstructions; for tables a scatter of input against reconstruction per feature."""
    model = inputs.model
    if inputs.images:
        examples = inputs.pick(n or 32)
        batch = inputs.batch(examples)
        x, recon = inputs.tiles(batch["x"]), inputs.tiles(model.reconstruct(batch))
        tiles, cols = paired_rows(x, recon)
        rows = len(tiles) // cols
        t = _tile_inches(rows, cols, extra_w=1.6)
        fig = _figure(cols * t + 1.6, rows * t + 1.0)
        _grid(fig.add_subplot(), tiles, cols, row_labels=["input", "recon."] * (rows // 2),
              title=PAIRED_ROWS_TITLE.format(f"{len(x)} {inputs.held} inputs"))
        return fig
    examples = inputs.pick(n or 500)
    batch = inputs.batch(examples)
    x, recon = inputs.values(batch["x"]), inputs.values(model.reconstruct(batch))
    shown, note = inputs.shown()
    names = inputs.features()
    fig, axes = _panels(len(shown))
    for ax, j in zip(axes, shown):
        ax.scatter(x[:, j], recon[:, j], s=6, alpha=0.5, linewidths=0)
        lo, hi = float(min(x[:, j].min(), recon[:, j].min())), float(max(x[:, j].max(), recon[:, j].max()))
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--")
        ss = float(((x[:, j] - x[:, j].mean()) ** 2).sum())
        r2 = 1 - float(((x[:, j] - recon[:, j]) ** 2).sum()) / ss if ss > 0 else float("nan")
        _label(ax, f"{names[j]}  (R² {r2:.2f})", "input", "reconstruction")
    _suptitle(fig, f"{len(x)} {inputs.held} examples against their reconstructions (dashed: equal){note}")
    return fig


@torch.inference_mode()
def samples(inputs: _Inputs, n: int | None = None, temperature: float = 1.0) -> Figure:
    """Decoded draws from the prior: an image grid of the means of p(x|z), or, for tables and
    arrays, per-feature histograms of draws x ~ p(x|z) over those of the held-out data (draws, so
    that the two spreads compare: the means leave out the likelihood's own noise). A conditional
    model draws its classes in turn."""
    model = inputs.model
    classes = inputs.class_names() if inputs.conditional else []
    n = n or (1000 if not inputs.images else 64 - 64 % len(classes) if 0 < len(classes) <= 16 else 64)
    options: dict[str, Any] = {} if temperature == 1 else {"temperature": temperature}  # a model may not take it
    if classes:
        options["y"] = torch.arange(n, device=inputs.device) % len(classes)
    x = model.sample(n, generator=_generator(inputs), draw=not inputs.images, **options)
    what = ("means of p(x|z)" if inputs.images else "draws x ~ p(x|z)") + ", z ~ p(z)"
    what += f" at temperature {temperature:g}" if temperature != 1 else ""
    if model.config.model == "ae":
        what += " (N(0, I), which an autoencoder's codes do not follow)"
    if inputs.images:
        cols = len(classes) if classes and len(classes) <= 16 else math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        t = _tile_inches(rows, cols)
        fig = _figure(cols * t + 1.2, rows * t + 1.0)
        by_class = bool(classes) and cols == len(classes)
        _grid(fig.add_subplot(), inputs.tiles(x), cols,
              title=f"{n} {what}" + ("; a column a class" if by_class else "; classes in turn" if classes else ""),
              col_labels=classes if by_class else None)
        return fig
    values = inputs.values(x)
    data = inputs.values(inputs.pick(max(n, 1000)).x[:])
    shown, note = inputs.shown()
    names = inputs.features()
    fig, axes = _panels(len(shown), extra_h=1.1)
    for ax, j in zip(axes, shown):
        both = np.concatenate([data[:, j], values[:, j]])
        lo, hi = float(both.min()), float(both.max())
        bins = np.linspace(lo, hi, 31) if hi > lo else 10
        ax.hist(data[:, j], bins=bins, density=True, color="0.6", alpha=0.6)
        ax.hist(values[:, j], bins=bins, density=True, histtype="step", color="C0", lw=1.6)
        ax.set_title(names[j], fontsize=10)
        ax.set_xlabel("value", fontsize=9)
        ax.set_ylabel("density", fontsize=9)
        ax.tick_params(labelsize=8)
    fig.legend(handles=[Patch(color="0.6", alpha=0.6, label=f"{inputs.held} data ({len(data)})"),
                        Line2D([], [], color="C0", lw=1.6, label=f"samples ({n})")],
               loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    _suptitle(fig, f"{what}{'; classes in turn' if classes else ''}{note}")
    return fig


def _pairs(inputs: _Inputs, k: int) -> Tensor:
    """``(P, 2)`` indices of held-out pairs chosen by the seed; a conditional model's pairs share a
    label, so that one label decodes the whole path."""
    examples = inputs.examples()
    if len(examples) < 2:
        raise VaekitError(f"{inputs.data or 'the held-out data'}: {len(examples)} example(s); a path needs two")
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(inputs.seed))
    if not inputs.conditional or examples.y is None:
        return order[: 2 * min(k, len(examples) // 2)].reshape(-1, 2)
    waiting: dict[int, int] = {}
    pairs = []
    for i in order.tolist():
        label = int(examples.y[i])
        if label in waiting:
            pairs.append((waiting.pop(label), i))
            if len(pairs) == k:
                break
        else:
            waiting[label] = i
    if not pairs:
        raise VaekitError("the held-out data have no two examples of one class to join")
    return torch.tensor(pairs)


def _slerp(a: Tensor, b: Tensor, t: Tensor, centre: Tensor) -> Tensor:
    """Spherical interpolation between ``a`` and ``b`` (``(P, L)``) about ``centre``: ``(P, T, L)``;
    a straight line where they point the same way."""
    a, b = a - centre, b - centre
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1)).unsqueeze(1)  # (P, 1)
    t = t.unsqueeze(0)  # (1, T)
    sin = torch.sin(omega)
    safe = sin.abs() > 1e-6
    wa = torch.where(safe, torch.sin((1 - t) * omega) / sin.where(safe, torch.ones_like(sin)), 1 - t)
    wb = torch.where(safe, torch.sin(t * omega) / sin.where(safe, torch.ones_like(sin)), t)
    return wa.unsqueeze(-1) * a.unsqueeze(1) + wb.unsqueeze(-1) * b.unsqueeze(1) + centre


@torch.inference_mode()
def interpolations(inputs: _Inputs, n: int | None = None) -> Figure:
    """Paths between the latent means of ``n`` held-out pairs, linear and spherical: for images two
    grids (a row a pair, the inputs at both ends); for tables each feature against the position t."""
    pairs = _pairs(inputs, n or (6 if inputs.images else 3))
    examples = inputs.examples()
    chosen = examples[pairs.flatten()]
    x = chosen["x"]
    y = chosen.get("y") if inputs.conditional else None
    loc, _ = inputs.encode(examples.subset(pairs.flatten()))
    a, b = loc[0::2], loc[1::2]
    steps = 10 if inputs.images else 41
    t = torch.linspace(0, 1, steps)
    centre, _, _ = inputs.reference()
    paths = {"linear": a.unsqueeze(1) + t.view(1, -1, 1) * (b - a).unsqueeze(1), "spherical": _slerp(a, b, t, centre)}
    P = len(pairs)
    y_path = None if y is None else y[0::2].repeat_interleave(steps)
    decoded = {k: inputs.decode(z.reshape(P * steps, -1), y_path) for k, z in paths.items()}
    if inputs.images:
        cols = steps + 2
        t_in = _tile_inches(2 * P + 1, cols, extra_w=1.4, extra_h=1.6)
        fig = _figure(cols * t_in + 1.4, 2 * P * t_in + 1.6)
        ends = inputs.tiles(x)
        labels = ["input"] + [f"t={v:.2g}" if i in (0, steps - 1) else "" for i, v in enumerate(t.tolist())] + ["input"]
        for row, (kind, out) in enumerate(decoded.items()):
            out = inputs.tiles(out).reshape(P, steps, *out.shape[1:])
            tiles = torch.cat([ends[0::2].unsqueeze(1), out, ends[1::2].unsqueeze(1)], 1).flatten(0, 1)
            _grid(fig.add_subplot(2, 1, row + 1), tiles, cols, col_labels=labels,
                  row_labels=[f"pair {i + 1}" for i in range(P)],
                  title=f"{kind} interpolation between latent means")
        return fig
    ends = inputs.values(x)
    shown, note = inputs.shown()
    names = inputs.features()
    fig, axes = _panels(len(shown), extra_h=1.1)
    values = {k: inputs.values(v).reshape(P, steps, -1) for k, v in decoded.items()}
    for ax, j in zip(axes, shown):
        for p in range(P):
            color = f"C{p % 10}"
            ax.plot(t, values["linear"][p, :, j], color=color, lw=1.4)
            ax.plot(t, values["spherical"][p, :, j], color=color, lw=1.4, ls="--")
            ax.scatter([0, 1], [ends[2 * p, j], ends[2 * p + 1, j]], color=color, s=22, zorder=3,
                       facecolors="none")
        ax.set_title(names[j], fontsize=10)
        ax.set_xlabel("t (0: first example, 1: second)", fontsize=9)
        ax.set_ylabel("decoded value", fontsize=9)
        ax.tick_params(labelsize=8)
    fig.legend(handles=[Line2D([], [], color="0.2", lw=1.4, label="linear"),
                        Line2D([], [], color="0.2", lw=1.4, ls="--", label="spherical"),
                        Line2D([], [], color="0.2", marker="o", ls="", markerfacecolor="none",
                               label="the inputs")] +
               [Line2D([], [], color=f"C{p % 10}", lw=3, label=f"pair {p + 1}") for p in range(P)],
               loc="outside lower center", ncols=min(3 + P, 6), fontsize=9, frameon=False)
    _suptitle(fig, f"decoded paths between the latent means of {P} {inputs.held} pairs{note}")
    return fig


def _project(loc: Tensor, projection: str, seed: int) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """2-D coordinates of the latent means, the linear map (2, L) where there is one, axis labels."""
    L = loc.shape[1]
    z = loc.double().numpy()
    if projection == "umap":
        import umap  # checked importable by make_figure

        return umap.UMAP(random_state=seed).fit_transform(z), None, ["UMAP 1", "UMAP 2"]
    if L == 2:
        return z, np.eye(2), ["z1", "z2"]
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2).fit(z)
    share = pca.explained_variance_ratio_ * 100
    return (z - pca.mean_) @ pca.components_.T, pca.components_, \
        [f"principal component {i + 1} ({share[i]:.0f}% of the variance)" for i in range(2)]


@torch.inference_mode()
def latent(inputs: _Inputs, n: int | None = None, projection: str = "pca") -> Figure:
    """The latent means of ``n`` held-out examples, coloured by label, projected to 2-D by PCA (or
    UMAP) when the latent is larger, with the 1-sigma ellipses of q(z|x) of a few examples."""
    examples = inputs.pick(n or 2000)
    loc, scale = inputs.encode(examples)
    labels = None if examples.y is None else examples.y.numpy()
    names = inputs.class_names()
    fig = _figure(7.5, 6.2)
    ax = fig.add_subplot()
    if loc.shape[1] == 1:
        groups = [(None, loc[:, 0].numpy())] if labels is None else \
            [(c, loc[labels == c, 0].numpy()) for c in np.unique(labels)]
        bins = np.linspace(float(loc.min()), float(loc.max()) + 1e-9, 41)
        for c, values in groups:
            ax.hist(values, bins=bins, histtype="step", lw=1.4,
                    label=None if c is None else (names[c] if c < len(names) else str(c)))
        ax.set_xlabel("z1", fontsize=10)
        ax.set_ylabel("examples", fontsize=10)
        if labels is not None:
            ax.legend(title="label", fontsize=8)
        ax.set_title(f"latent means of {len(loc)} {inputs.held} examples (a 1-D latent)", fontsize=11)
        return fig
    xy, linear, axis_labels = _project(loc, projection, inputs.seed)
    n_labels = 0 if labels is None else int(labels.max()) + 1
    size = 24 if len(xy) < 300 else 10 if len(xy) < 3000 else 4
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.6, linewidths=0, color="C0")
    elif n_labels <= 20:
        cmap = "tab10" if n_labels <= 10 else "tab20"
        import matplotlib

        colors = matplotlib.colormaps[cmap]
        for c in np.unique(labels):
            pick = labels == c
            ax.scatter(xy[pick, 0], xy[pick, 1], s=size, alpha=0.6, linewidths=0, color=colors(int(c)),
                       label=names[c] if c < len(names) else str(c))
        ax.legend(title="label", fontsize=8, markerscale=max(1.0, 30 / size) ** 0.5, loc="center left",
                  bbox_to_anchor=(1.01, 0.5))
    else:
        points = ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.6, linewidths=0, c=labels, cmap="viridis")
        fig.colorbar(points, ax=ax, label="label")
    spread = bool((scale > 1e-6).any())
    ellipses = 0
    if linear is not None and spread:
        ellipses = min(8, len(loc))
        for i in range(ellipses):
            cov = linear @ np.diag(scale[i].double().numpy() ** 2) @ linear.T
            vals, vecs = np.linalg.eigh(cov)
            angle = math.degrees(math.atan2(vecs[1, -1], vecs[0, -1]))
            ax.add_patch(Ellipse(tuple(xy[i]), 2 * math.sqrt(max(vals[-1], 0)), 2 * math.sqrt(max(vals[0], 0)),
                                 angle=angle, fill=False, edgecolor="black", lw=1.0))
            ax.plot(*xy[i], marker="+", color="black", ms=7)
    if projection == "pca":
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(axis_labels[0], fontsize=10)
    ax.set_ylabel(axis_labels[1], fontsize=10)
    ax.tick_params(labelsize=8)
    how = "" if loc.shape[1] == 2 else f", {loc.shape[1]}-D projected by {projection.upper()}"
    extra = (f"; black: q(z|x) of {ellipses}, 1σ" if ellipses else
             "; codes are points (no spread)" if not spread else "")
    ax.set_title(f"latent means E[q(z|x)] of {len(loc)} {inputs.held} examples{how}{extra}", fontsize=10)
    return fig


@torch.inference_mode()
def manifold(inputs: _Inputs, n: int | None = None) -> Figure:
    """For a 2-D latent, the decoded grid of ``n`` x ``n`` points at the quantiles of the prior
    (Kingma and Welling 2014, figure 4): an image grid, or a map of each feature over the grid."""
    n = n or (20 if inputs.images else 25)
    centre, spread, source = inputs.reference()
    q = torch.distributions.Normal(0.0, 1.0).icdf((torch.arange(n, dtype=torch.float64) + 0.5) / n).float()
    z1 = centre[0] + spread[0] * q  # columns, left to right
    z2 = centre[1] + spread[1] * q.flip(0)  # rows, top to bottom: high z2 above
    grid = torch.stack(torch.meshgrid(z2, z1, indexing="ij")[::-1], -1).reshape(-1, 2)
    classes = inputs.class_names() if inputs.conditional else []
    y = torch.zeros(len(grid), dtype=torch.long) if classes else None
    decoded = inputs.decode(grid, y)
    what = (f"decoded z at the quantiles {0.5 / n:.3g}..{1 - 0.5 / n:.3g} of "
            + ("N(0, 1)" if source == "p(z)" and bool((centre == 0).all() and (spread == 1).all())
               else f"a normal with the mean and sd of {source}")
            + (f"; class {classes[0]}" if classes else ""))
    if inputs.images:
        t = _tile_inches(n, n, extra_w=1.6, extra_h=1.4)
        fig = _figure(n * t + 1.6, n * t + 1.4)
        ax = fig.add_subplot()
        marked = set(np.linspace(0, n - 1, min(n, 5)).round().astype(int).tolist())
        _grid(ax, inputs.tiles(decoded), n,
              col_labels=[f"{v:.2g}" if i in marked else "" for i, v in enumerate(z1.tolist())],
              row_labels=[f"{v:.2g}" if i in marked else "" for i, v in enumerate(z2.tolist())],
              title=what)
        ax.set_xlabel("z1", fontsize=10)
        ax.set_ylabel("z2", fontsize=10)
        return fig
    values = inputs.values(decoded).reshape(n, n, -1)
    shown, note = inputs.shown()
    names = inputs.features()
    fig, axes = _panels(len(shown), width=3.3, height=2.8)
    for ax, j in zip(axes, shown):
        mesh = ax.pcolormesh(z1.numpy(), z2.numpy(), values[:, :, j], shading="nearest", cmap="viridis")
        fig.colorbar(mesh, ax=ax)
        _label(ax, names[j], "z1", "z2")
    _suptitle(fig, f"each feature's decoded mean over the latent plane: {what}{note}")
    return fig


@torch.inference_mode()
def traversals(inputs: _Inputs, n: int | None = None) -> Figure:
    """The ``n`` most active latent units (default up to 8), one at a time, from -3 to +3 prior
    standard deviations around the encoding of one held-out example (chosen by the seed), the other
    units kept: an image grid (a row a unit), or each feature against the unit's value."""
    examples = inputs.pick(1000)
    loc, _ = inputs.encode(examples)
    activity = loc.var(0) if len(loc) > 1 else torch.zeros(loc.shape[1])
    units = torch.argsort(activity, descending=True)[: min(n or 8, inputs.latent_dim)].tolist()
    i = int(torch.randint(len(examples), (1,), generator=torch.Generator().manual_seed(inputs.seed)))
    centre, spread, source = inputs.reference()
    steps = 9 if inputs.images else 41
    k = torch.linspace(-3, 3, steps)
    z = loc[i].repeat(len(units), steps, 1)
    for r, u in enumerate(units):
        z[r, :, u] = centre[u] + k * spread[u]
    y = None
    if inputs.conditional:
        y = examples.y[i].repeat(len(units) * steps)
    decoded = inputs.decode(z.reshape(-1, inputs.latent_dim), y)
    sd = source
    if inputs.images:
        t = _tile_inches(len(units) + 1, steps + 2, extra_w=2.2, extra_h=1.4)
        fig = _figure((steps + 1.5) * t + 2.2, len(units) * t + 1.4)
        gs = fig.add_gridspec(1, 2, width_ratios=[1.2, steps])
        ax_in = fig.add_subplot(gs[0, 0])
        _grid(ax_in, inputs.tiles(examples[i:i + 1]["x"]), 1, title="encoded\nexample")
        ax = fig.add_subplot(gs[0, 1])
        _grid(ax, inputs.tiles(decoded), steps,
              row_labels=[f"z{u + 1} (var {float(activity[u]):.2g})" for u in units],
              col_labels=[_sigma_label(v) for v in k.tolist()],
              title=f"a row a unit, by the variance of its mean E[z_j|x] over the {inputs.held} data;\n"
                    f"columns: the unit at standard deviations of {sd} about its mean, the others kept")
        return fig
    values = inputs.values(decoded).reshape(len(units), steps, -1)
    shown, note = inputs.shown()
    names = inputs.features()
    fig, axes = _panels(len(shown), extra_h=1.1)
    for ax, j in zip(axes, shown):
        for r, u in enumerate(units):
            ax.plot(k, values[r, :, j], color=f"C{r % 10}", lw=1.4)
        ax.set_title(names[j], fontsize=10)
        ax.set_xlabel(f"unit's value (sd of {sd})", fontsize=9)
        ax.set_ylabel("decoded value", fontsize=9)
        ax.tick_params(labelsize=8)
    fig.legend(handles=[Line2D([], [], color=f"C{r % 10}", lw=2, label=f"z{u + 1} (var {float(activity[u]):.2g})")
                        for r, u in enumerate(units)],
               loc="outside lower center", ncols=min(len(units), 6), fontsize=9, frameon=False)
    _suptitle(fig, f"one latent unit at a time about the encoding of {inputs.held} example {i}{note}")
    return fig


@torch.inference_mode()
def kl_per_unit(inputs: _Inputs, n: int | None = None) -> Figure:
    """A bar a latent unit: the mean KL(q(z_j|x) || p(z_j)) over ``n`` held-out examples (default
    up to 5000), on a log scale, coloured by activity, Cov_x(E_q[z_j]) above 0.01 (as
    ``estimators.active_units``), with 0.01 nats marked."""
    model = inputs.model
    examples = inputs.pick(n or 5000)
    total, locs = None, []
    for batch in examples.batches(1000, inputs.device):
        qz = model.encode(batch)
        kl = model.prior.kl_per_unit(qz).sum(0).double().cpu()
        total = kl if total is None else total + kl
        locs.append(qz.mean.double().cpu())
    kl = (total / len(examples)).numpy()
    loc = torch.cat(locs)
    activity = (loc.var(0) if len(loc) > 1 else torch.zeros(loc.shape[1])).numpy()
    active = activity > ACTIVE_THRESHOLD
    L = len(kl)
    fig = _figure(max(6.5, 0.28 * L + 2.5), 4.6)
    ax = fig.add_subplot()
    floor = max(1e-6, min(1e-3, float(kl[kl > 0].min()) / 2 if (kl > 0).any() else 1e-3))
    ax.bar(np.arange(1, L + 1), np.maximum(kl, floor), color=np.where(active, "C0", "0.7"), bottom=0)
    ax.set_yscale("log")
    ax.set_ylim(floor, max(float(kl.max()), ACTIVE_THRESHOLD) * 2)
    ax.axhline(ACTIVE_THRESHOLD, color="C3", ls="--", lw=1)
    if L <= 64:
        ax.set_xticks(np.arange(1, L + 1), [str(j) for j in range(1, L + 1)], fontsize=8 if L <= 32 else 6)
    ax.set_xlim(0.4, L + 0.6)
    ax.set_xlabel("latent unit j", fontsize=10)
    ax.set_ylabel("mean KL(q(z_j|x) || p(z_j)), nats", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.legend(handles=[Patch(color="C0", label=f"active: Cov(E[z_j|x]) > {ACTIVE_THRESHOLD:g} "
                                              f"({int(active.sum())} of {L})"),
                       Patch(color="0.7", label="inactive"),
                       Line2D([], [], color="C3", ls="--", label=f"{ACTIVE_THRESHOLD:g} nats")],
              fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(f"KL per latent unit, {len(examples)} {inputs.held} examples; total {kl.sum():.2f} nats", fontsize=11)
    return fig


def _column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    def number(text: str | None) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            return float("nan")

    return np.array([number(r.get(name)) for r in rows])


def curves(inputs: _Inputs, n: int | None = None) -> Figure:
    """The objective, reconstruction, KL, beta and learning rate of metrics.csv against the step,
    training and validation in each panel."""
    rows = read_metrics(inputs.run.path)
    headline = inputs.model.headline
    step = _column(rows, "step")
    x, xlabel = (step, "optimizer step") if np.nanmax(step) > 0 else (_column(rows, "epoch"), "epoch")
    names = rows[0].keys()
    panels = [(headline.key, f"{headline.label}, nats per example")]
    if headline.key != "reconstruction" and "train_reconstruction" in names:
        panels.append(("reconstruction", "reconstruction E[log p(x|z)], nats"))
    if "train_kl" in names:
        panels += [("kl", "KL(q(z|x) || p(z)), nats"), ("beta", "KL weight β")]
    panels.append(("lr", "learning rate"))
    fig, axes = _panels(len(panels), width=3.6, height=2.8, extra_h=1.1, per_row=3)
    marker = "o" if len(rows) <= 30 else None
    for ax, (key, title) in zip(axes, panels):
        if key in ("beta", "lr"):
            ax.plot(x, _column(rows, key), color="C2", marker=marker, ms=3)
            if key == "lr" and np.nanmin(_column(rows, key)) > 0:
                ax.set_yscale("log")
        else:
            for split, color in (("train", "C0"), ("val", "C1")):
                ax.plot(x, _column(rows, f"{split}_{key}"), color=color, marker=marker, ms=3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.legend(handles=[Line2D([], [], color="C0", lw=2, label="training (epoch mean)"),
                        Line2D([], [], color="C1", lw=2, label="validation")],
               loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    _suptitle(fig, f"training curves of {inputs.run.path.name} ({len(rows)} epoch{'' if len(rows) == 1 else 's'})")
    return fig


# -- which figures apply ---------------------------------------------------------------------------

def _metrics_rows(run) -> list[dict[str, str]]:
    try:
        return read_metrics(run.path)
    except (OSError, ValueError, csv.Error):
        return []


def _why_not(run, kind: str) -> str | None:
    """Why ``kind`` does not apply to ``run``, in words; None when it does."""
    model = run.model
    config = model.config
    if kind == "manifold" and config.latent_dim != 2:
        return (f"the latent has {config.latent_dim} dimensions; a manifold is drawn for a 2-D latent "
                "(train with --latent-dim 2)")
    if kind == "kl-per-unit":
        from .models.priors import Prior

        prior = getattr(model, "prior", None)
        if config.model in ("ae", "pca") or not isinstance(prior, Prior):
            return f"a {config.model!r} model's codes are points, with no KL to a prior"
        if getattr(config, "latent_dims", None):
            return "two stochastic layers have no KL per unit of z1 in closed form"
        if type(prior).kl_per_unit is Prior.kl_per_unit:
            return f"the {config.prior!r} prior has no KL per unit in closed form"
    if kind == "curves":
        if not getattr(model, "trains_by_gradient", True):
            return f"a {config.model!r} model is fitted in closed form, with no training curves"
        rows = _metrics_rows(run)
        if not rows or not any(k.startswith("train_") for k in rows[0]):
            return f"{Path(run.path) / METRICS} holds no training rows"
    return None


def applicable(run) -> list[str]:
    """The kinds of :data:`KINDS` that apply to ``run`` (a :class:`vaekit.runs.Run`), in order."""
    return [kind for kind in KINDS if _why_not(run, kind) is None]


_DRAW: dict[str, Callable[..., Figure]] = {
    "reconstructions": reconstructions, "samples": samples, "interpolations": interpolations, "latent": latent,
    "manifold": manifold, "traversals": traversals, "kl-per-unit": kl_per_unit, "curves": curves,
}


def make_figure(run, kind: str, *, data: str | None = None, data_dir: str | os.PathLike | None = None,
                seed: int = 0, temperature: float = 1.0, n: int | None = None, projection: str = "pca") -> Figure:
    """The figure ``kind`` of ``run`` (a :class:`vaekit.runs.Run`).

    Parameters
    ----------
    data, data_dir : the held-out data (default: the run's test split, or the validation part of its
        own file), read and transformed as in training
    seed : chooses the examples, pairs and prior draws
    temperature : for ``samples``: the prior's standard deviation times T
    n : how many, by kind: examples (reconstructions, latent, kl-per-unit), samples, pairs
        (interpolations), the grid's side (manifold), units (traversals); ignored by curves
    projection : for ``latent`` with more than two dimensions: ``pca``, or ``umap`` where
        umap-learn is installed

    Raises
    ------
    VaekitError
        In one line, for an unknown kind, a kind that does not apply to the run, or an option the
        kind does not take.
    """
    if kind not in KINDS:
        raise VaekitError(f"figure {kind!r}: unknown; the kinds are {', '.join(KINDS)}")
    why = _why_not(run, kind)
    if why:
        raise VaekitError(f"figure {kind!r} does not apply to {run.path}: {why}")
    if n is not None and n < 1:
        raise VaekitError(f"n {n}: must be at least 1")
    if temperature != 1 and kind != "samples":
        raise VaekitError(f"temperature {temperature:g}: applies to the samples figure, not {kind!r}")
    if not (0 <= temperature < math.inf):
        raise VaekitError(f"temperature {temperature}: must be a finite number, at least 0")
    if projection not in ("pca", "umap"):
        raise VaekitError(f"projection {projection!r}: choose pca or umap")
    if projection != "pca":
        if kind != "latent":
            raise VaekitError(f"projection {projection}: applies to the latent figure, not {kind!r}")
        import importlib.util

        if importlib.util.find_spec("umap") is None:
            raise VaekitError("projection umap: needs umap-learn (pip install umap-learn)")
    inputs = _Inputs(run, data, data_dir, seed)
    run.model.eval()
    options: dict[str, Any] = {"n": n}
    if kind == "samples":
        options["temperature"] = temperature
    if kind == "latent":
        options["projection"] = projection
    return _DRAW[kind](inputs, **options)


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path``, .png (at :data:`DPI`) or .svg by its suffix, atomically."""
    from .runs import atomic_write_bytes

    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise VaekitError(f"{out}: unknown figure type {out.suffix or '(none)'!r}; use .png or .svg")
    if not out.parent.is_dir():
        raise VaekitError(f"{out}: folder {out.parent} does not exist")
    buf = io.BytesIO()
    fig.savefig(buf, format=suffix[1:], dpi=DPI, metadata={"Date": None} if suffix == ".svg" else None)
    atomic_write_bytes(out, buf.getvalue())
    return out
