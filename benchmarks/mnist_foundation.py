"""Foundation figures: dynamically binarized MNIST, default MLP, N epochs.

Usage (from the repository root)::

    python benchmarks/mnist_foundation.py --data-dir ../shared/data/mnist --epochs 10

Prints a Markdown row for benchmarks/RESULTS.md and writes the run directory and a JSON file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import torch

import vaekit
from vaekit import ModelConfig, TrainConfig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("VAEKIT_MNIST", "../shared/data/mnist"))
    p.add_argument("--data", default="mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default="runs/bench-foundation")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.data == "mnist" and not Path(args.data_dir).is_dir():
        print(f"skipped: no MNIST folder at {args.data_dir} (pass --data-dir)", file=sys.stderr)
        return 0
    out = Path(args.out)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    cfg = TrainConfig(data=args.data, data_dir=args.data_dir if args.data == "mnist" else None,
                      binarize="dynamic", epochs=args.epochs, device=args.device)
    _, summary = vaekit.train(ModelConfig(), cfg, out, progress=False)
    seconds = [float(r["seconds"]) for r in vaekit.runs.read_metrics(out)]
    result = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}",
        "data": args.data, "epochs": args.epochs,
        "test_negative_elbo": -summary["elbo"], "test_kl": summary["kl"], "bits_per_dim": summary["bits_per_dim"],
        "seconds_per_epoch_median": statistics.median(seconds), "seconds_total": sum(seconds),
    }
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| date | machine | data | epochs | test −ELBO (nats) | KL | bits/dim | s/epoch (median) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {result['date']} | {result['machine']} | {args.data}, dynamic binarization | {args.epochs} | "
          f"{result['test_negative_elbo']:.2f} | {result['test_kl']:.2f} | {result['bits_per_dim']:.4f} | "
          f"{result['seconds_per_epoch_median']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
