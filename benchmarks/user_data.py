"""Issue-13 figures: users' own data trained with `vaekit train`'s defaults only (no flags but
--data), each beside a baseline, and the quick start's time and pictures.

Usage (from the repository root)::

    python benchmarks/user_data.py --mnist-dir ../shared/data/mnist --out /tmp/user-data

Cases (every held-out figure on fresh examples the run never saw, in nats per example):

- a 3-D swiss roll (scikit-learn's ``make_swiss_roll``, noise 0.5), 5000 points in a ``.npy``:
  importance-weighted log p(x) beside a single full-covariance Gaussian and a 20-component
  Gaussian mixture (scikit-learn, fitted on the same 5000 points);
- a CSV of mixed scales (scikit-learn's breast-cancer table, 30 columns from 0.001 to 4000):
  beside a full-covariance Gaussian and probabilistic PCA (scikit-learn ``PCA.score``);
- a folder of 300 MNIST digits as 28x28 PNGs, and an N x 784 ``.npy`` of 10000 MNIST digits:
  beside wave one's defaults (784-1024-512-32, batch 128, 30 epochs), with how many
  reconstructions of 1000 test digits a classifier trained on real digits still reads right;
- the quick start, ``vaekit train`` on the built-in digits: wall time, and the classifier's
  accuracy on reconstructions of the 359 test digits, beside wave one's quick start
  (``vaekit train --epochs 200`` with its defaults).
The MNIST cases are skipped without ``--mnist-dir``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WAVE_ONE = ["--hidden", "1024", "512", "--latent-dim", "32", "--batch-size", "128", "--patience", "0"]


def vaekit(*args: object) -> tuple[float, str]:
    """Run the command line; returns its wall time and stdout (stderr passed through)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vaekit", *map(str, args)], stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"vaekit {' '.join(map(str, args))}: exit status {done.returncode}")
    return time.perf_counter() - t0, done.stdout


def evaluate(run: Path, data: Path, k: int) -> dict:
    return json.loads(vaekit("evaluate", run, "--data", data, "--n-importance", k, "--no-probe", "--json")[1])


def train(run: Path, *args: object) -> dict:
    shutil.rmtree(run, ignore_errors=True)
    seconds, _ = vaekit("train", "--run-dir", run, *args)
    cfg = json.loads((run / "config.json").read_text())
    rows = (run / "metrics.csv").read_text().splitlines()
    return {"wall_s": seconds, "epochs": len(rows) - 1, "batch": cfg["train"]["batch_size"],
            "hidden": cfg["model"]["hidden"], "latent": cfg["model"]["latent_dim"]}


def mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x, y


def reconstructions_read_right(run: Path, data: Path | None, clf, labels: np.ndarray, n: int, out: Path) -> float:
    args = ["reconstruct", run, "-n", n, "-o", out] + (["--data", data] if data else [])
    vaekit(*args)
    r = np.load(out).reshape(n, -1)
    return float((clf.predict(r) == labels[:n]).mean())


def swiss_roll(out: Path, k: int) -> dict:
    from sklearn.datasets import make_swiss_roll
    from sklearn.mixture import GaussianMixture

    x, _ = make_swiss_roll(5000, noise=0.5, random_state=0)
    fresh, _ = make_swiss_roll(5000, noise=0.5, random_state=1)
    np.save(out / "roll.npy", x.astype(np.float32))
    np.save(out / "roll-fresh.npy", fresh.astype(np.float32))
    trained = train(out / "roll-run", "--data", out / "roll.npy")
    m = evaluate(out / "roll-run", out / "roll-fresh.npy", k)
    gauss = GaussianMixture(1, covariance_type="full").fit(x).score(fresh)
    gmm = GaussianMixture(20, covariance_type="full", random_state=0).fit(x).score(fresh)
    return {"case": "swiss roll .npy (5000 x 3, noise 0.5)", **trained, "vaekit_ll": m["log_likelihood"],
            "vaekit_elbo": m["elbo"], "baselines": {"full-covariance Gaussian": gauss, "20-component GMM": gmm}}


def mixed_csv(out: Path, k: int) -> dict:
    from sklearn.datasets import load_breast_cancer
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    data = load_breast_cancer()
    order = np.random.default_rng(0).permutation(len(data.data))
    x, fresh = data.data[order[:469]], data.data[order[469:]]
    header = ",".join(n.replace(" ", "_") for n in data.feature_names)
    np.savetxt(out / "cancer.csv", x, delimiter=",", header=header, comments="", fmt="%.6g")
    np.savetxt(out / "cancer-fresh.csv", fresh, delimiter=",", header=header, comments="", fmt="%.6g")
    trained = train(out / "cancer-run", "--data", out / "cancer.csv")
    m = evaluate(out / "cancer-run", out / "cancer-fresh.csv", k)
    gauss = GaussianMixture(1, covariance_type="full", reg_covar=1e-6).fit(x).score(fresh)
    ppca = max(PCA(q).fit(x).score(fresh) for q in (2, 5, 10, 15))  # the best on the fresh rows: generous
    return {"case": "CSV of mixed scales (469 x 30, breast cancer)", **trained, "vaekit_ll": m["log_likelihood"],
            "vaekit_elbo": m["elbo"], "baselines": {"full-covariance Gaussian": gauss, "probabilistic PCA (best q)": ppca}}


def images(out: Path, mnist_dir: Path, k: int, clf) -> list[dict]:
    from PIL import Image

    x, _ = mnist(mnist_dir, "train")
    xt, yt = mnist(mnist_dir, "test")
    folder, fresh = out / "digits300", out / "digits-fresh"
    for d in (folder, fresh):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    for i in range(300):
        Image.fromarray(x[i]).save(folder / f"{i:04d}.png")
    for i in range(1000):
        Image.fromarray(xt[i]).save(fresh / f"{i:04d}.png")
    np.save(out / "mnist10k.npy", (x[:10000] / 255).astype(np.float32).reshape(10000, 784))
    np.save(out / "mnist-fresh.npy", (xt[:1000] / 255).astype(np.float32).reshape(1000, 784))
    rows = []
    for case, data, test in (("folder of 300 28x28 PNGs", folder, fresh),
                             ("N x 784 .npy (10000 MNIST digits)", out / "mnist10k.npy", out / "mnist-fresh.npy")):
        for who, flags in (("defaults", []), ("wave one's defaults", WAVE_ONE + ["--epochs", "30"])):
            run = out / f"{data.stem}-{'new' if not flags else 'old'}"
            trained = train(run, "--data", data, *flags)
            m = evaluate(run, test, k)
            right = reconstructions_read_right(run, test, clf, yt, 1000, out / "r.npy")
            rows.append({"case": case, "who": who, **trained, "vaekit_ll": m["log_likelihood"],
                         "vaekit_elbo": m["elbo"], "read_right": right})
    rows.append({"case": "classifier on the 1000 real test digits", "read_right": float((clf.predict(
        xt[:1000].reshape(1000, -1) / 255) == yt[:1000]).mean())})
    return rows


def quick_start(out: Path) -> list[dict]:
    from sklearn.linear_model import LogisticRegression

    import vaekit as vk

    ds = vk.load_dataset("digits")
    xtr, ytr = ds.train.reshape(len(ds.train), -1).numpy(), ds.train_labels.numpy()
    xte, yte = ds.test.reshape(len(ds.test), -1).numpy(), ds.test_labels.numpy()
    clf = LogisticRegression(max_iter=2000).fit(xtr, ytr)
    rows = [{"case": "classifier on the 359 real test digits", "read_right": float((clf.predict(xte) == yte).mean())}]
    for who, flags in (("vaekit train (defaults)", []),
                       ("wave one: vaekit train --epochs 200", WAVE_ONE + ["--epochs", "200"])):
        run = out / ("qs-new" if not flags else "qs-old")
        trained = train(run, *flags)
        right = reconstructions_read_right(run, None, clf, yte, len(yte), out / "qs.npy")
        summary = json.loads((run / "summary.json").read_text())
        rows.append({"case": who, **trained, "vaekit_elbo": summary["elbo"], "read_right": right})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist-dir", default=None)
    p.add_argument("--out", default="/tmp/user-data")
    p.add_argument("--k", type=int, default=1000, help="importance samples for tables")
    p.add_argument("--k-images", type=int, default=200, help="importance samples for images")
    p.add_argument("--parts", nargs="+", default=["quick-start", "tables", "images"],
                   choices=["quick-start", "tables", "images", "none"],
                   help="what to run (the others are kept from --out; none: only rewrite user_data.md)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started, load0 = dt.datetime.now().isoformat(timespec="seconds"), os.getloadavg()[0]
    saved = out / "user_data.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}  # the parts not asked for are kept
    if "quick-start" in args.parts:
        results["quick_start"] = quick_start(out)
    if "tables" in args.parts:
        results["tables"] = [swiss_roll(out, args.k), mixed_csv(out, args.k)]
    if "images" not in args.parts:
        pass
    elif args.mnist_dir and Path(args.mnist_dir).is_dir():
        from sklearn.linear_model import LogisticRegression

        x, y = mnist(Path(args.mnist_dir), "train")
        clf = LogisticRegression(max_iter=300).fit(x[20000:30000].reshape(10000, -1) / 255, y[20000:30000])
        results["images"] = images(out, Path(args.mnist_dir), args.k_images, clf)
    else:
        print("MNIST cases skipped: pass --mnist-dir", file=sys.stderr)
    results["meta"] = results.get("meta", {}) if args.parts == ["none"] else {"command": "python benchmarks/user_data.py " + " ".join(sys.argv[1:] if argv is None else argv),
                       "started": started, "finished": dt.datetime.now().isoformat(timespec="seconds"),
                       "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
                       "load_average_start": load0, "load_average_end": os.getloadavg()[0],
                       "k": args.k, "k_images": args.k_images}
    saved.write_text(json.dumps(results, indent=1))
    (out / "user_data.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    """The figures as the tables in benchmarks/RESULTS.md."""
    meta = results["meta"]
    lines = [f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; {meta['started']} to {meta['finished']}; "
             f"load average {meta['load_average_start']:.2f} at the start, {meta['load_average_end']:.2f} at the end.", ""]
    if "tables" in results:
        lines += [f"Held-out log p(x) (nats per example, fresh points; vaekit: K = {meta['k']}), default flags:", "",
                  "| data | vaekit (chosen: widths, latent, batch; epochs run) | vaekit ELBO | baselines |", "|---|---|---|---|"]
        for r in results["tables"]:
            base = "; ".join(f"{k} {v:.2f}" for k, v in r["baselines"].items())
            lines.append(f"| {r['case']} | **{r['vaekit_ll']:.2f}** ({'-'.join(map(str, r['hidden']))}, {r['latent']}, "
                         f"{r['batch']}; {r['epochs']}) | {r['vaekit_elbo']:.2f} | {base} |")
        lines.append("")
    if "images" in results:
        lines += [f"Images (Bernoulli likelihood on grey levels; 1000 fresh MNIST test digits, K = {meta['k_images']}):",
                  "", "| data | flags | widths, latent, batch; epochs | held-out log p(x) | ELBO | reconstructions read right |",
                  "|---|---|---|---|---|---|"]
        for r in results["images"]:
            if "who" not in r:
                lines.append(f"| {r['case']} | | | | | {r['read_right']:.3f} |")
                continue
            lines.append(f"| {r['case']} | {r['who']} | {'-'.join(map(str, r['hidden']))}, {r['latent']}, {r['batch']}; "
                         f"{r['epochs']} | {r['vaekit_ll']:.2f} | {r['vaekit_elbo']:.2f} | {r['read_right']:.3f} |")
        lines.append("")
    if "quick_start" in results:
        lines += ["Quick start (built-in digits; reconstructions of the 359 test digits read by a logistic regression "
                  "trained on the real training digits):", "",
                  "| run | wall s (train + figures) | epochs | test ELBO | reconstructions read right |", "|---|---|---|---|---|"]
        for r in results["quick_start"]:
            if "wall_s" not in r:
                lines.append(f"| {r['case']} | | | | {r['read_right']:.3f} |")
                continue
            lines.append(f"| {r['case']} | {r['wall_s']:.1f} | {r['epochs']} | {r['vaekit_elbo']:.2f} | {r['read_right']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
