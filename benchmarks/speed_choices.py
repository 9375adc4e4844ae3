"""Each speed choice vaekit makes by default, measured against what it replaced.

Usage (from the repository root)::

    python benchmarks/speed_choices.py [--out benchmarks/results]   # a few minutes
    python benchmarks/speed_choices.py --tiny --out /tmp/choices    # seconds: what the tests run

Every comparison runs its contenders in one process, in turn, over several rounds, and reports
the median of each; the ratio is the alternative's time over vaekit's choice (above 1: the
choice is faster). Random data stand in for MNIST (the timings depend on shapes, not values).
It writes ``speed_choices.json`` and ``speed_choices.md`` to ``--out`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from speed import machine_info, write_results  # this folder's speed.py
from vaekit import VAE, ByteImages, ModelConfig
from vaekit.evaluation.estimators import log_likelihood

SHAPE = (1, 28, 28)


def compare(contenders: dict[str, Callable[[], Any]], rounds: int, inner: int) -> dict[str, float]:
    """Median seconds of one call of each contender: ``inner`` calls a timing, ``rounds``
    timings each, the contenders in turn (a slow spell of the machine falls on all of them)."""
    for fn in contenders.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for k, fn in contenders.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[k].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def _model(hidden: int, latent: int) -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(hidden=(hidden,), latent_dim=latent, likelihood="bernoulli", data_shape=SHAPE))


def _grads(model: VAE, x: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model.training_loss(x)[0].sum().backward()
    return [p.grad for p in model.parameters()]


def adam_implementations(x: torch.Tensor, rounds: int, inner: int) -> dict[str, Any]:
    """One optimizer step on the 784-400-20 gradients: fused (vaekit), foreach (torch's default), per tensor."""
    models, opts = {}, {}
    for name, kw in {"fused": dict(fused=True), "foreach": dict(foreach=True), "for-loop": dict(foreach=False)}.items():
        models[name] = _model(400, 20)
        _grads(models[name], x)
        opts[name] = torch.optim.Adam(models[name].parameters(), lr=1e-3, **kw)
    return {"choice": "fused", "seconds": compare({k: o.step for k, o in opts.items()}, rounds, inner)}


def denormal_flush(rounds: int, inner: int) -> dict[str, Any]:
    """Fused Adam on a state whose second moments have decayed to denormal numbers (as they do
    for parameters whose gradients stay near zero), with denormals flushed (vaekit) or not."""
    n = 784 * 400
    p = torch.nn.Parameter(torch.zeros(n))
    p.grad = torch.full((n,), 1e-30)  # a gradient whose square underflows towards the denormals
    opt = torch.optim.Adam([p], lr=1e-3, fused=True)
    opt.step()
    state = opt.state[p]
    state["exp_avg_sq"].fill_(1e-41)  # denormal in float32 (below 1.2e-38)
    state["exp_avg"].fill_(1e-41)

    def run(flush: bool):
        def step():
            torch.set_flush_denormal(flush)
            state["exp_avg_sq"].fill_(1e-41)
            state["exp_avg"].fill_(1e-41)
            opt.step()
        return step

    out = compare({"flushed": run(True), "not flushed": run(False)}, rounds, inner)
    torch.set_flush_denormal(True)  # as main() set it, as vaekit.fit sets it
    return {"choice": "flushed", "seconds": out}


def gradient_check(x: torch.Tensor, rounds: int, inner: int) -> dict[str, Any]:
    """The finiteness check of every step: the gradients' total L2 norm (vaekit, public API), or
    torch's private multi-tensor AMP check at scale 1 (what vaekit used before issue 11)."""
    grads = _grads(_model(400, 20), x)
    found, unit = torch.zeros(1), torch.ones(1)

    def check():
        found.zero_()
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, unit)
        return bool(found)

    return {"choice": "total norm",
            "seconds": compare({"multi-tensor check": check,
                                "total norm": lambda: bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))},
                               rounds, inner)}


def byte_images(n: int, batch: int, rounds: int, inner: int) -> dict[str, Any]:
    """A batch gathered at random from 8-bit images read as grey levels (vaekit's ByteImages)
    or from the float32 array; and the memory each holds."""
    g = torch.Generator().manual_seed(0)
    stored = torch.randint(0, 256, (n, *SHAPE), generator=g, dtype=torch.uint8)
    grey, lazy = stored.float() / 255, ByteImages(stored)
    idx = torch.randperm(n, generator=g)[:batch]
    return {"choice": "ByteImages",
            "seconds": compare({"ByteImages": lambda: lazy[idx], "float32": lambda: grey[idx]}, rounds, inner),
            "bytes": {"ByteImages": stored.nbytes, "float32": grey.nbytes}}


def iw_chunk(n_examples: int, k: int, rounds: int) -> dict[str, Any]:
    """``log_likelihood`` (K samples) with vaekit's chunk budget of about 1M numbers, or 4M, 16M.

    The budget sets both the chunk and the batch: as many examples at once as let all their K
    samples share one chunk (``vaekit.evaluation.estimators._sizes``)."""
    from vaekit.evaluation import estimators

    model = _model(512, 16).eval()
    x = torch.rand(n_examples, *SHAPE, generator=torch.Generator().manual_seed(0))
    budgets = {"1M numbers": 2**20, "4M numbers": 2**22, "16M numbers": 2**24}

    def call(budget: int) -> None:
        kept, estimators.CHUNK_NUMBERS = estimators.CHUNK_NUMBERS, budget
        try:
            log_likelihood(model, x, k, generator_seed=0)
        finally:
            estimators.CHUNK_NUMBERS = kept

    calls = {name: (lambda b=b: call(b)) for name, b in budgets.items()}
    sizes = {}
    for name, b in budgets.items():
        kept, estimators.CHUNK_NUMBERS = estimators.CHUNK_NUMBERS, b
        batch, chunk = estimators._sizes(model, k, None, None)
        estimators.CHUNK_NUMBERS = kept
        sizes[name] = {"examples": batch, "samples": chunk}
    return {"choice": "1M numbers", "seconds": compare(calls, rounds, 1), "chunk_sizes": sizes}


def threads(x: torch.Tensor, rounds: int, inner: int) -> dict[str, Any]:
    """A whole training step (forward, backward, fused Adam) with every core's thread (torch's
    default, which vaekit keeps) or one."""
    model = _model(400, 20)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    cores = torch.get_num_threads()

    def step(n: int):
        def run():
            torch.set_num_threads(n)
            opt.zero_grad(set_to_none=True)
            model.training_loss(x)[0].sum().backward()
            opt.step()
        return run

    out = compare({f"{cores} threads": step(cores), "1 thread": step(1)}, rounds, inner)
    torch.set_num_threads(cores)
    return {"choice": f"{cores} threads", "seconds": out}


def inference_mode(x: torch.Tensor, rounds: int, inner: int) -> dict[str, Any]:
    """The ELBO of a batch of 1000 for evaluation, under ``inference_mode`` (vaekit) or ``no_grad``."""
    model = _model(400, 20).eval()

    def under(ctx):
        def run():
            with ctx():
                return model.elbo(x).elbo.sum()
        return run

    return {"choice": "inference_mode",
            "seconds": compare({"inference_mode": under(torch.inference_mode), "no_grad": under(torch.no_grad)},
                               rounds, inner)}


MEMORY_PROBE = """
import sys, time, torch
from speed import peak_rss_mib as rss  # run in the benchmarks folder
from vaekit import VAE, ByteImages, ModelConfig, evaluate
from vaekit.data.prepare import chunks, column_moments
n, what, arg = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
# drawn in place: no int64 intermediate to raise the high-water mark before the measurement
x = ByteImages(torch.empty(n, 1, 28, 28, dtype=torch.uint8).random_(0, 256, generator=torch.Generator().manual_seed(0)))
torch.manual_seed(0)
model = VAE(ModelConfig(hidden=(400,), latent_dim=20, likelihood="bernoulli", data_shape=(1, 28, 28)))
before = rss()
t0 = time.perf_counter()
if what == "evaluate":
    evaluate(model, x, batch_size=arg)
elif arg == 0:
    column_moments(x)
else:  # the same moments in chunks of ``arg`` rows
    for c in chunks(x, arg):
        c = c.double()
        c.sum(0), c.square().sum(0)
print(rss() - before, time.perf_counter() - t0)
"""


def memory(what: str, n: int, settings: dict[str, int], rounds: int) -> dict[str, Any]:
    """Peak memory a step adds to a fresh process (its high-water mark after, less before): the
    largest over ``rounds`` processes (the allocator sometimes finds the room already taken, and
    the step adds nothing); and its seconds, the median."""
    import subprocess

    mib: dict[str, list[float]] = {k: [] for k in settings}
    secs: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(rounds):
        for name, arg in settings.items():
            out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(n), what, str(arg)], cwd=Path(__file__).parent,
                                 capture_output=True, text=True, check=True).stdout.split()
            mib[name].append(float(out[0]))
            secs[name].append(float(out[1]))
    return {"seconds": {k: statistics.median(v) for k, v in secs.items()},
            "added_peak_mib": {k: max(v) for k, v in mib.items()}}


def compiled(x: torch.Tensor, steps: int, rounds: int) -> dict[str, Any]:
    """``torch.compile`` of the training loss against eager (vaekit's default on the CPU): the
    compile's own seconds, from an empty compile cache as on a user's first run, then a step's
    time once compiled."""
    import tempfile

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="vaekit-inductor-")  # cold
    eager = _model(400, 20)
    comp = _model(400, 20)
    loss_fn = torch.compile(comp.training_loss)
    opts = {m: torch.optim.Adam(m.parameters(), lr=1e-3, fused=True) for m in (eager, comp)}

    def step(model, fn):
        def run():
            opt = opts[model]
            opt.zero_grad(set_to_none=True)
            fn(x)[0].sum().backward()
            opt.step()
        return run

    t0 = time.perf_counter()
    step(comp, loss_fn)()
    compile_s = time.perf_counter() - t0
    out = compare({"eager": step(eager, eager.training_loss), "compiled": step(comp, loss_fn)}, rounds, steps)
    return {"choice": "eager", "seconds": out, "compile_seconds": compile_s}


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"## Speed choices ({r['date']})", "",
             f"Command: `{r['command']}`  ",
             f"Machine: {m['platform']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads; "
             f"load average {m['load_average_1min_start_end'][0]:.2f} at the start, "
             f"{m['load_average_1min_start_end'][1]:.2f} at the end; whole run {r['runtime_seconds']:.0f} s.", "",
             "| what | vaekit's choice | its time | alternative | its time | alternative / choice |",
             "|---|---|---|---|---|---|"]
    for what, c in r["choices"].items():
        secs = c["seconds"]
        mine = secs[c["choice"]]
        added = c.get("added_peak_mib", {})
        tag = lambda k: f" (up to +{added[k]:.0f} MiB peak)" if k in added else ""  # noqa: E731
        for alt, t in secs.items():
            if alt == c["choice"]:
                continue
            lines.append(f"| {what} | {c['choice']} | {_time(mine)}{tag(c['choice'])} | {alt} | {_time(t)}{tag(alt)} "
                         f"| {t / mine:.2f} |")
    notes = []
    if "data: a batch of 128 images" in r["choices"]:
        b = r["choices"]["data: a batch of 128 images"]["bytes"]
        notes.append(f"Memory of the images: ByteImages {b['ByteImages'] / 2**20:.0f} MiB, float32 "
                     f"{b['float32'] / 2**20:.0f} MiB.")
    if "IW log p(x), chunk size" in r["choices"]:
        notes.append("Chunk sizes (samples at batch 100): " + ", ".join(
            f"{k}: {v['examples']} examples x {v['samples']} samples"
            for k, v in r["choices"]["IW log p(x), chunk size"]["chunk_sizes"].items()) + ".")
    comp = r["choices"].get("training step, torch.compile")
    if comp:
        notes.append(f"torch.compile's first call (the compile, from an empty cache) took {comp['compile_seconds']:.1f} s.")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def _time(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} µs"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results", help="folder for speed_choices.json and .md")
    p.add_argument("--rounds", type=int, default=7, help="timings of each contender, in turn")
    p.add_argument("--tiny", action="store_true", help="few rounds, small sizes, no compile (the tests)")
    p.add_argument("--no-compile", action="store_true", help="leave out torch.compile (it takes a minute)")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    torch.set_flush_denormal(True)  # as vaekit.fit sets it
    rounds, inner = (2, 2) if args.tiny else (args.rounds, 20)
    g = torch.Generator().manual_seed(0)
    x128 = torch.rand(128, *SHAPE, generator=g)
    x1000 = torch.rand(1000, *SHAPE, generator=g)
    choices: dict[str, Any] = {}
    steps = [
        ("Adam step (784-400-20)", lambda: adam_implementations(x128, rounds, inner)),
        ("Adam step on denormal state", lambda: denormal_flush(rounds, inner)),
        ("gradient finiteness check", lambda: gradient_check(x128, rounds, inner)),
        ("data: a batch of 128 images", lambda: byte_images(2000 if args.tiny else 60000, 128, rounds, inner * 5)),
        ("IW log p(x), chunk size", lambda: iw_chunk(10 if args.tiny else 100, 20 if args.tiny else 1000, rounds)),
        ("training step, threads", lambda: threads(x128, rounds, inner)),
        ("evaluation forward (batch 1000)", lambda: inference_mode(x1000, rounds, max(1, inner // 4))),
    ]
    n_mem, mem_rounds = (2000, 1) if args.tiny else (10000, 3)
    steps.append((f"evaluate, batch size ({n_mem} images)", lambda: {
        "choice": "500", **memory("evaluate", n_mem, {"500": 500, "1000": 1000}, mem_rounds)}))
    steps.append((f"column moments for the output bias ({6 * n_mem} images)", lambda: {
        "choice": "chunks of 256K numbers", **memory("moments", 6 * n_mem, {"chunks of 256K numbers": 0,
                                                                           "chunks of 4096 rows": 4096}, mem_rounds)}))
    if not (args.tiny or args.no_compile):
        steps.append(("training step, torch.compile", lambda: compiled(x128, inner, rounds)))
    for what, fn in steps:
        print(f"[speed_choices] {what} ...", file=sys.stderr, flush=True)
        choices[what] = fn()
    cmd = " ".join(["python", "benchmarks/speed_choices.py", *(sys.argv[1:] if argv is None else argv)])
    results = {
        "date": dt.date.today().isoformat(), "command": cmd,
        "machine": machine_info(load_start),
        "choices": choices, "runtime_seconds": time.perf_counter() - t_start,
    }
    write_results(Path(args.out), "speed_choices", results, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
