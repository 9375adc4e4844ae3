"""How many samples each estimator of log p(x) needs: importance sampling with q(z|x) against
the seeds' naive estimator (z from the prior), on the first N test images of a trained run.

Usage (from the repository root)::

    python benchmarks/estimator_convergence.py RUN [--n-examples 100]
"""

from __future__ import annotations

import argparse
import sys
import time

import vaekit
from vaekit.data.prepare import load_split
from vaekit.evaluation.estimators import log_likelihood, naive_log_likelihood


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--n-examples", type=int, default=100)
    p.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100, 1000, 5000])
    args = p.parse_args(argv)
    run = vaekit.load_run(args.run)
    x = load_split(run.train_config, data_shape=run.model_config.data_shape, data_info=run.info["data"])[: args.n_examples]
    elbo = vaekit.evaluate(run.model, x)["elbo"]
    print(f"{args.n_examples} test images of {args.run}; mean ELBO {elbo:.2f} nats\n")
    print("| K | importance sampling log p(x) | s | naive (prior samples) log p(x) | s |")
    print("|---|---|---|---|---|")
    for k in args.ks:
        t0 = time.perf_counter()
        iw = float(log_likelihood(run.model, x, k).mean())
        t1 = time.perf_counter()
        naive = float(naive_log_likelihood(run.model, x, k).mean())
        t2 = time.perf_counter()
        print(f"| {k} | {iw:.2f} | {t1 - t0:.1f} | {naive:.2f} | {t2 - t1:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
