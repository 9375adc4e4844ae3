"""The speed benchmarks, run end to end on tiny synthetic data (``--tiny``): no timing is asserted,
but what they report must hold together. Every contender ran and has positive, finite times;
every derived figure and ratio is the arithmetic of the figures it is computed from; the Markdown
table shows the JSON's numbers (to its printed precision) and is printed too.

Each script runs once per module (a fixture); ``--tiny`` fixes its sizes (one epoch, one round,
K = 10, 20 test images, two timing rounds), so no flag makes it cheaper still. Slow: a minute or
more on a slow machine, so marked ``slow``; CI runs them.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

# speed.py's contenders: (hidden, latent, batch); pythae's is skipped under --tiny.
CONTENDERS = {
    "vaekit-784-400-20": (400, 20, 128),
    "plain-784-400-20": (400, 20, 128),
    "plain-tensor-784-400-20": (400, 20, 128),
    "bare-784-400-20": (400, 20, 128),
    "pythae-784-512-16": (512, 16, 100),
    "vaekit-784-512-16": (512, 16, 100),
}
N_TRAIN_TINY, N_TEST_TINY = 256, 20  # speed.py's synthetic data under --tiny

# speed_choices.py's comparisons under --tiny (torch.compile is left out)
CHOICES = {
    "Adam step (784-400-20)", "Adam step on denormal state", "gradient finiteness check",
    "data: a batch of 128 images", "IW log p(x), chunk size", "training step, threads",
    "evaluation forward (batch 1000)", "evaluate, batch size (2000 images)",
    "column moments for the output bias (12000 images)",
}


def _run(script: str, out: Path) -> tuple[dict[str, Any], str, str]:
    """Run ``benchmarks/SCRIPT --tiny``; its JSON, its Markdown file and its stdout."""
    proc = subprocess.run([sys.executable, str(BENCH / script), "--tiny", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stem = script.removesuffix(".py")
    return json.loads((out / f"{stem}.json").read_text()), (out / f"{stem}.md").read_text(), proc.stdout


@pytest.fixture(scope="module")
def speed(tmp_path_factory):
    return _run("speed.py", tmp_path_factory.mktemp("speed"))


@pytest.fixture(scope="module")
def choices(tmp_path_factory):
    return _run("speed_choices.py", tmp_path_factory.mktemp("choices"))


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _table(md: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header row starts with ``header``, as cells."""
    lines = md.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith(header)), None)
    assert start is not None, f"no table headed {header!r} in:\n{md}"
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    assert rows, f"no rows under {header!r}"
    return rows


def _shown(cell: str, value: float, scale: float = 1.0) -> bool:
    """Whether ``cell`` (e.g. ``1,234``, ``0.52``, ``48%``) shows ``value * scale`` to its printed precision."""
    text = cell.replace(",", "").rstrip("%")
    decimals = len(text.partition(".")[2])
    return abs(float(text) - value * scale) <= 0.5 * 10**-decimals * (1 + 1e-9) + 1e-12


# -- speed.py --------------------------------------------------------------------------------------


def test_speed_every_contender_ran_and_its_figures_follow_from_its_times(speed):
    r, _, _ = speed
    assert r["epochs"] == 1 and r["rounds"] == 1  # what --tiny promises
    assert set(r["training"]) == set(CONTENDERS)
    # skipped under --tiny, or before that where pythae (the bench extra) is not installed
    assert r["training"]["pythae-784-512-16"] in ({"skipped": "--tiny"}, {"skipped": "pythae not installed"})
    assert any("pythae" in s for s in r["skipped"])
    peak = r["peak"]
    assert _positive(peak["gflops"]) and peak["gflops"] == statistics.median(peak["gflops_by_round"])
    for key, (hidden, latent, batch) in CONTENDERS.items():
        row = r["training"][key]
        if key.startswith("pythae"):
            continue
        assert "error" not in row, (key, row)
        assert (row["hidden"], row["latent"], row["batch"]) == (hidden, latent, batch)
        assert row["n_train"] == N_TRAIN_TINY and row["n_test"] == N_TEST_TINY
        epochs = row["epoch_seconds_by_round"]
        assert len(epochs) == r["rounds"] and all(len(e) == r["epochs"] for e in epochs), epochs
        assert all(_positive(s) for e in epochs for s in e), (key, epochs)
        # the median of every epoch after each process's first (the only one, with one epoch)
        assert row["seconds_per_epoch"] == statistics.median(s for e in epochs for s in (e[1:] or e))
        assert row["images_per_second"] == pytest.approx(N_TRAIN_TINY / row["seconds_per_epoch"], rel=1e-12)
        # matrix-product FLOPs of an example: 3 products a layer (forward, weight and input
        # gradients) but no input gradient for the first; layers 784-h, h-l twice, l-h, h-784
        macs = 784 * hidden + 2 * hidden * latent + latent * hidden + hidden * 784
        assert row["flops_per_example"] == 2 * (3 * macs - 784 * hidden)
        assert row["fraction_of_peak"] == pytest.approx(
            row["flops_per_example"] * N_TRAIN_TINY / row["seconds_per_epoch"] / 1e9 / peak["gflops"], rel=1e-12)
        floor = peak["floors"][key]
        assert floor["seconds_per_step"] == pytest.approx(sum(p["seconds"] for p in floor["products"]), rel=1e-12)
        steps = math.ceil(N_TRAIN_TINY / batch)
        mm_floor = floor["seconds_per_step"] * steps / row["seconds_per_epoch"]
        assert row["fraction_of_mm_floor"] == pytest.approx(mm_floor, rel=1e-12)
        assert row["peak_rss_mib"] >= row["rss_after_data_mib"] > 0  # a high-water mark only rises
        # -ELBO of data in [0, 1] under the Bernoulli likelihood: cross-entropy and KL are >= 0
        assert math.isfinite(row["test_neg_elbo"]) and row["test_neg_elbo"] > 0


def test_speed_ratios_are_the_quotients_of_their_figures(speed):
    r, _, _ = speed
    t = r["training"]

    def ips(key):
        return t[key]["images_per_second"]

    expected = {
        "training_vs_pythae": None,  # pythae skipped under --tiny
        "training_vs_plain": ips("vaekit-784-400-20") / ips("plain-784-400-20"),
        "training_vs_plain_tensor": ips("vaekit-784-400-20") / ips("plain-tensor-784-400-20"),
        "training_vs_bare": ips("vaekit-784-400-20") / ips("bare-784-400-20"),
        "mm_floor_fraction_784_400_20": t["vaekit-784-400-20"]["fraction_of_mm_floor"],
        "mm_floor_fraction_784_512_16": t["vaekit-784-512-16"]["fraction_of_mm_floor"],
        "evaluation_vs_pythae": None,
        "peak_rss_vs_plain": t["vaekit-784-400-20"]["peak_rss_mib"] / t["plain-784-400-20"]["peak_rss_mib"],
    }
    assert set(r["ratios"]) == set(expected)
    for name, want in expected.items():
        got = r["ratios"][name]
        assert (got is None) if want is None else got == pytest.approx(want, rel=1e-12), (name, got, want)


def test_speed_evaluation_is_a_log_likelihood_of_the_trained_weights(speed):
    r, _, _ = speed
    e = r["evaluation"]
    assert "error" not in e, e
    assert e["n_importance"] == 10 and e["n_examples"] == N_TEST_TINY  # what --tiny promises
    own = e["vaekit_own_weights"]
    assert _positive(own["seconds"])
    # log p(x) <= 0 for data in [0, 1] under the Bernoulli likelihood; and the same 20 images
    # and weights as vaekit-784-512-16's test ELBO, which it bounds from above in expectation
    neg_elbo = r["training"]["vaekit-784-512-16"]["test_neg_elbo"]
    assert -neg_elbo - 5 < own["log_likelihood"] < 0, (own, neg_elbo)
    assert "vaekit" not in e and "pythae" not in e  # no pythae run: no comparison


def test_speed_markdown_shows_the_json_numbers(speed):
    r, md, stdout = speed
    assert md.strip() in stdout  # the table is printed too
    (gflops,) = re.findall(r"\*\*([\d.]+) GFLOP/s\*\*", md)
    assert _shown(gflops, r["peak"]["gflops"])

    rows = _table(md, "| model | contender |")
    assert len(rows) == len(CONTENDERS)
    unmatched = list(rows)
    for key, (hidden, latent, batch) in CONTENDERS.items():
        t = r["training"][key]
        if "skipped" in t:
            says = f"skipped: {t['skipped']}"
            row = next((x for x in unmatched if x[0] == f"784-{hidden}-{latent}" and x[3] == says), None)
            assert row is not None, (key, t, unmatched)
        else:
            figures = [(t["seconds_per_epoch"], 1), (t["images_per_second"], 1), (t["peak_rss_mib"], 1),
                       (t["fraction_of_mm_floor"], 100), (t["fraction_of_peak"], 100), (t["test_neg_elbo"], 1)]
            row = next((x for x in unmatched if x[0] == f"784-{hidden}-{latent}" and x[2] == str(batch)
                        and all(_shown(c, v, s) for c, (v, s) in zip(x[3:9], figures))), None)
            assert row is not None, (key, figures, unmatched)
        unmatched.remove(row)

    own = r["evaluation"]["vaekit_own_weights"]
    (row,) = [x for x in _table(md, "| estimator | weights |") if x[1] == "vaekit-trained"]
    assert _shown(row[2], own["seconds"]) and _shown(row[3], own["log_likelihood"]), row

    # the targets table: each measured ratio is the JSON's, and "met" agrees with its target
    measured = _table(md, "| ratio | measured | target | met |")
    assert len(measured) == len(r["ratios"])
    values = list(r["ratios"].values())
    for what, shown, target, met in measured:
        if shown == "—":
            assert None in values, what
            values.remove(None)
            assert met == "—"
            continue
        scale = 100 if shown.endswith("%") else 1
        value = next((v for v in values if v is not None and _shown(shown, v, scale)), None)
        assert value is not None, (what, shown, r["ratios"])
        values.remove(value)
        if target == "—":
            assert met == "—"
        else:
            goal = float(target[2:].rstrip("%")) / scale
            assert met == ("yes" if (value >= goal if target.startswith("≥") else value <= goal) else "**no**"), \
                (what, shown, target, met)
    assert values == []


# -- speed_choices.py ------------------------------------------------------------------------------


def test_speed_choices_every_choice_timed_against_its_alternatives(choices):
    r, _, _ = choices
    c = r["choices"]
    assert set(c) == CHOICES
    for what, ch in c.items():
        secs = ch["seconds"]
        assert ch["choice"] in secs and len(secs) >= 2, what  # the choice and at least one alternative
        assert all(_positive(t) for t in secs.values()), (what, secs)
        added = ch.get("added_peak_mib", {})
        assert set(added) <= set(secs) and all(math.isfinite(m) and m >= 0 for m in added.values()), (what, added)
    # the memory figures the choices rest on: 2000 images of 28x28 bytes, a quarter of float32's
    assert c["data: a batch of 128 images"]["bytes"] == {"ByteImages": 2000 * 784, "float32": 4 * 2000 * 784}
    chunks = c["IW log p(x), chunk size"]["chunk_sizes"]
    numbers = {name: ch["examples"] * ch["samples"] * 784 for name, ch in chunks.items()}
    for name, budget in (("1M numbers", 2**20), ("4M numbers", 2**22), ("16M numbers", 2**24)):
        assert numbers[name] <= budget or chunks[name]["samples"] == 1, (name, chunks)  # a chunk within its budget
    assert numbers["16M numbers"] > numbers["4M numbers"] > numbers["1M numbers"] >= 784
    # vaekit keeps torch's thread count: the choice is the machine's own
    assert c["training step, threads"]["choice"] == f"{r['machine']['threads']} threads"


def _seconds(cell: str) -> tuple[float, float]:
    """A time cell (``12.34 ms``, ``567 µs``, maybe with a peak tag) as (seconds, rounding tolerance)."""
    number, unit = re.match(r"([\d.]+) (ms|µs)", cell).groups()
    scale = 1e-3 if unit == "ms" else 1e-6
    return float(number) * scale, 0.5 * 10 ** -len(number.partition(".")[2]) * scale * (1 + 1e-9)


def test_speed_choices_markdown_ratios_are_the_quotients_of_the_json_times(choices):
    r, md, stdout = choices
    assert md.strip() in stdout
    rows = _table(md, "| what | vaekit's choice |")
    listed = [(what, alt) for what, _, _, alt, _, _ in rows]
    expected = [(what, alt) for what, ch in r["choices"].items() for alt in ch["seconds"] if alt != ch["choice"]]
    assert sorted(listed) == sorted(expected)  # every alternative once
    for what, choice, mine_cell, alt, alt_cell, ratio in rows:
        ch = r["choices"][what]
        assert choice == ch["choice"]
        mine, theirs = ch["seconds"][choice], ch["seconds"][alt]
        for cell, t in ((mine_cell, mine), (alt_cell, theirs)):
            shown, tol = _seconds(cell)
            assert abs(shown - t) <= tol, (what, cell, t)
        for name, cell in ((choice, mine_cell), (alt, alt_cell)):
            tag = re.search(r"up to \+(\d+) MiB peak", cell)
            added = ch.get("added_peak_mib", {})
            assert (tag is None) == (name not in added), (what, cell)
            if tag:
                assert _shown(tag.group(1), added[name]), (what, cell, added[name])
        assert _shown(ratio, theirs / mine), (what, alt, ratio, theirs / mine)
