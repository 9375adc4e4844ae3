"""Figures: image grids of samples, reconstructions and interpolations (matplotlib, no display)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from .errors import VaekitError  # noqa: E402


def is_image_shape(shape: tuple[int, ...]) -> bool:
    """``C x H x W`` with one (grey) or three (colour) channels."""
    return len(shape) == 3 and shape[0] in (1, 3)


def image_grid(images: Tensor, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images in [0, 1] into one ``(rows*H, cols*W[, 3])`` array."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.ones(c, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = images[i]
    arr = grid.numpy()
    return arr[0] if c == 1 else arr.transpose(1, 2, 0)


#: the caption of :func:`paired_rows`' layout, given what the inputs are
PAIRED_ROWS_TITLE = "{} (each row) above their reconstructions (the row below)"


def paired_rows(inputs: Tensor, outputs: Tensor, cols: int | None = None) -> tuple[Tensor, int]:
    """Tiles for :func:`image_grid` that put each input directly above its output, for any count.

    Rows of ``cols`` inputs (default: about a square grid), each followed by the row of their
    outputs; the last two rows are filled out with blank (white) tiles. Returns the tiles and
    ``cols``, the grid's ``nrow``: input ``i`` sits in row ``2 (i // cols)`` and column
    ``i % cols``, its output one row below.
    """
    n = len(inputs)
    cols = cols or math.ceil(math.sqrt(2 * n))
    blank = torch.ones((-n) % cols, *inputs.shape[1:], dtype=inputs.dtype, device=inputs.device)
    inputs, outputs = torch.cat([inputs, blank]), torch.cat([outputs.to(inputs.dtype), blank])
    rows = [part[k : k + cols] for k in range(0, len(inputs), cols) for part in (inputs, outputs)]
    return torch.cat(rows), cols


def save_image_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None, title: str | None = None) -> None:
    """Write ``(N, C, H, W)`` images as one PNG grid at ``path``."""
    if not is_image_shape(tuple(images.shape[1:])):
        raise VaekitError(f"{path}: cannot draw data of shape {tuple(images.shape[1:])} as images; write .npy instead")
    arr = image_grid(images, nrow)
    height, width = arr.shape[:2]
    inches = max(3.0, min(10.0, max(height, width) / 40))  # readable for 8x8 digits and 28x28 MNIST
    fig, ax = plt.subplots(figsize=(inches * width / max(height, width), inches * height / max(height, width)))
    ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=100, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    os.replace(tmp, path)


def save_run_figures(model, test, run_dir: Path, *, seed: int = 0, n: int = 64) -> None:
    """``reconstructions.png`` (each row of test images above the row of their reconstructions)
    and ``samples.png``.

    ``test``: :class:`vaekit.data.Examples` (a conditional model reconstructs given the labels).
    """
    if not is_image_shape(tuple(test.shape[1:])):
        return  # tables and flat vectors have no picture
    device = model.device
    batch = next(test.batches(n // 2, device))
    x, recon = batch["x"], model.reconstruct(batch)
    tiles, pair_cols = paired_rows(x, recon)
    save_image_grid(tiles, run_dir / "reconstructions.png", nrow=pair_cols, title=PAIRED_ROWS_TITLE.format("test images"))
    cols = int(math.ceil(math.sqrt(n)))
    gen = torch.Generator(device=device).manual_seed(seed)
    save_image_grid(sample_for_figure(model, n, gen), run_dir / "samples.png", nrow=cols,
                    title="means of p(x|z), z ~ p(z)" + (", labels in turn" if "y" in model.conditions else ""))


def sample_for_figure(model, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` samples for a figure; a model conditioned on labels draws the classes in turn."""
    if "y" in model.conditions:
        y = torch.arange(n, device=model.device) % model.config.n_classes
        return model.sample(n, generator=generator, y=y)
    return model.sample(n, generator=generator)
