"""One training step of vaekit's ``fit`` against the hand-tuned loop of ``speed.py``, in one
process, in turn: the steadiest comparison on a busy machine (no process start-up, no data
loading in the timings).

    python benchmarks/step_ab.py [--rounds 3]

784-400-20 VAE, Bernoulli likelihood, batch 128, 25600 random grey-level 28x28 images; each
round times 3 epochs of 200 steps per contender and reports the mean step of epochs 2 and 3.
vaekit trains on the images as bytes (``ByteImages``) and as float32.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vaekit import VAE, ByteImages, ModelConfig, TrainConfig, fit

sys.path.insert(0, str(Path(__file__).parent))
from speed import ExampleVAE, _kld  # noqa: E402  (the hand-tuned loop's model and KL)

N, B = 128 * 200, 128


def vaekit_step_ms(data) -> float:
    torch.manual_seed(0)
    model = VAE(ModelConfig(hidden=(400,), latent_dim=20, likelihood="bernoulli", data_shape=(1, 28, 28)))
    rows = fit(model, data, None, TrainConfig(epochs=3, batch_size=B, val_fraction=0.0, device="cpu"), progress=False)
    return sum(r["seconds"] for r in rows[1:]) / (2 * N / B) * 1e3


def hand_tuned_step_ms(x: torch.Tensor) -> float:
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = ExampleVAE(784, 400, 20, logits=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    seconds = []
    for _ in range(3):
        t0 = time.perf_counter()
        perm = torch.randperm(N)
        for i in range(0, N, B):
            xb = x[perm[i : i + B]]
            logits, mu, logvar = model(xb)
            loss = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum") + _kld(mu, logvar)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - t0)
    torch.set_flush_denormal(False)
    return sum(seconds[1:]) / (2 * N / B) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    stored = torch.randint(0, 256, (N, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    grey = stored.float().div(255)
    print("| round | vaekit, bytes (ms) | vaekit, float32 (ms) | hand-tuned (ms) | hand-tuned / vaekit (bytes, float32) |")
    print("|---|---|---|---|---|")
    for r in range(1, args.rounds + 1):
        b, f, h = vaekit_step_ms(ByteImages(stored)), vaekit_step_ms(grey), hand_tuned_step_ms(grey.flatten(1))
        print(f"| {r} | {b:.2f} | {f:.2f} | {h:.2f} | {h / b:.2f}, {h / f:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
