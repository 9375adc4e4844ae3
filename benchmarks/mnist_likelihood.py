"""Issue-3 figures: test ELBO, importance-weighted log-likelihood (K = 5000, Burda et al. 2015's
protocol), the gap, active units and linear-probe accuracy of a trained MNIST run, with the wall
time of the K = 5000 evaluation, beside the published figures.

Usage (from the repository root)::

    python benchmarks/mnist_likelihood.py RUN [--n-importance 5000] [--n-examples 10000]

RUN is a run directory trained on ``--data mnist --binarize dynamic``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time

import torch

import vaekit
from vaekit.data.prepare import load_split
from vaekit.evaluation.estimators import log_likelihood
from vaekit.evaluation.metrics import evaluate_run
from vaekit.training.device import resolve_device

PUBLISHED = [  # Burda, Grosse and Salakhutdinov 2015, Table 1, one stochastic layer, k = 1 and 50
    ("VAE, one stochastic layer (Burda et al. 2015, Table 1)", 86.76),
    ("IWAE, k = 50 (Burda et al. 2015, Table 1)", 84.78),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--n-importance", type=int, default=5000)
    p.add_argument("--n-examples", type=int, default=None)
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    run = vaekit.load_run(args.run, resolve_device(args.device))
    r = evaluate_run(run, n_examples=args.n_examples)  # ELBO, active units, probe accuracy
    x = load_split(run.train_config, data_shape=run.model_config.data_shape, data_info=run.info["data"])
    x = x[: args.n_examples] if args.n_examples else x
    t0 = time.perf_counter()
    ll = log_likelihood(run.model, x, args.n_importance, chunk_size=args.chunk_size)
    seconds = time.perf_counter() - t0  # the K-sample estimate alone
    r.update(log_likelihood=float(ll.mean()), n_importance=args.n_importance)
    r["gap"] = r["log_likelihood"] - r["elbo"]
    epochs = len(vaekit.runs.read_metrics(args.run))
    r.update(seconds=seconds, epochs=epochs, date=dt.date.today().isoformat(),
             machine=f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                     f"threads {torch.get_num_threads()}, {run.model.device}")
    json.dump(r, sys.stderr, indent=2)
    print(file=sys.stderr)
    arch = run.model_config
    print(f"| model | test −ELBO | test −log p(x), K={args.n_importance} | gap | active units | probe accuracy |")
    print("|---|---|---|---|---|---|")
    print(f"| vaekit {arch.arch} {'-'.join(map(str, arch.hidden))}, latent {arch.latent_dim}, {epochs} epochs "
          f"| {-r['elbo']:.2f} | {-r['log_likelihood']:.2f} | {r['gap']:.2f} | {r['active_units']} "
          f"| {r['probe_accuracy']:.4f} |")
    for name, nll in PUBLISHED:
        print(f"| {name} | | {nll:.2f} | | | |")
    print(f"\n{r['n_examples']} test images; wall time of the K = {args.n_importance} estimate {seconds:.1f} s "
          f"on {r['machine']}, {r['date']}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
