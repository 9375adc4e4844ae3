"""Issue-5 figures: training throughput of 1 process against 2 (torchrun, gloo), and the cost of
writing a checkpoint every epoch.

Usage (from the repository root)::

    python benchmarks/training_scaling.py --data-dir ../shared/data/mnist --epochs 2

Without MNIST it runs on the embedded digits. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _epoch_seconds(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(r["seconds"]) for r in csv.DictReader(f)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args(argv)
    mnist = Path(args.data_dir).is_dir()
    data = ["--data", "mnist", "--data-dir", args.data_dir, "--binarize", "dynamic"] if mnist else ["--data", "digits"]
    common = [*data, "--epochs", str(args.epochs), "--device", "cpu", "--val-fraction", "0.1"]
    tmp = Path(tempfile.mkdtemp(prefix="vaekit-scaling-"))
    rows = []
    try:
        for label, launcher, threads in (
            ("1 process, 2 threads", [sys.executable, "-m", "vaekit", "train"], "2"),
            ("2 processes (torchrun, gloo), 1 thread each",
             [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
              "--master-port", str(_free_port()), "-m", "vaekit", "train"], "1"),
        ):
            run = tmp / label.split()[0]
            env = {**os.environ, "OMP_NUM_THREADS": threads}
            subprocess.run([*launcher, *common, "--run-dir", str(run)], check=True, env=env,
                           stdout=subprocess.DEVNULL)
            secs = _epoch_seconds(run)
            n_train = json.loads((run / "config.json").read_text())["data"]["n_train"]
            med = statistics.median(secs)
            rows.append((label, med, n_train / med))
        # checkpoint cost: the default model and its Adam state, written as training writes it
        import vaekit
        from vaekit.training import checkpoint as ckpt
        from vaekit.models import build_model

        shape = (1, 28, 28) if mnist else (1, 8, 8)
        model = build_model(vaekit.ModelConfig(data_shape=shape, likelihood="bernoulli"))
        opt = torch.optim.Adam(model.parameters())
        model.loss(torch.rand(4, *shape)).backward()
        opt.step()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        gen = torch.Generator()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            ckpt.save_checkpoint(tmp / "c.safetensors", model, opt, sched, ckpt.Progress(), {"gen": gen})
            times.append(time.perf_counter() - t0)
        size = (tmp / "c.safetensors").stat().st_size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{dt.date.today()} | {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} | "
          f"{'MNIST (dynamic binarization)' if mnist else 'digits'}, default model, batch 128\n")
    print("| launch | s/epoch (median) | images/s |")
    print("|---|---|---|")
    for label, med, ips in rows:
        print(f"| {label} | {med:.2f} | {ips:.0f} |")
    ck = statistics.median(times)
    print(f"\nCheckpoint (model + Adam state + generator, {size / 2**20:.1f} MiB, with fsync): "
          f"{ck * 1000:.0f} ms median of 5, {100 * ck / rows[0][1]:.2f} % of a 1-process epoch.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
