"""The speed benchmark runs end to end on tiny synthetic data (no timing is asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEED = ROOT / "benchmarks" / "speed.py"

TRAINING_FIGURES = ("seconds_per_epoch", "images_per_second", "peak_rss_mib", "fraction_of_peak", "test_neg_elbo")


def test_speed_tiny_writes_json_and_table(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(SPEED), "--tiny", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads((out / "speed.json").read_text())
    for key in ("date", "command", "machine", "peak", "training", "evaluation", "skipped", "runtime_seconds"):
        assert key in results
    assert {"cores", "torch", "threads"} <= set(results["machine"])
    assert math.isfinite(results["peak"]["gflops"]) and results["peak"]["gflops"] > 0
    for contender in ("vaekit-784-400-20", "plain-784-400-20", "plain-tensor-784-400-20", "bare-784-400-20",
                      "vaekit-784-512-16"):
        row = results["training"][contender]
        assert "error" not in row, row
        for figure in TRAINING_FIGURES:
            assert math.isfinite(row[figure]) and row[figure] > 0, (contender, figure, row[figure])
    # under --tiny pythae is skipped (unless --with-pythae), and says so
    assert "skipped" in results["training"]["pythae-784-512-16"]
    assert any("pythae" in s for s in results["skipped"])
    evaluation = results["evaluation"]
    assert evaluation["n_importance"] == 10 and evaluation["n_examples"] == 20
    assert math.isfinite(evaluation["vaekit_own_weights"]["seconds"])
    assert math.isfinite(evaluation["vaekit_own_weights"]["log_likelihood"])

    # every ratio with both sides measured is a positive number; pythae's are absent under --tiny
    ratios = results["ratios"]
    for name in ("training_vs_plain", "training_vs_plain_tensor", "training_vs_bare", "peak_rss_vs_plain",
                 "mm_floor_fraction_784_400_20"):
        assert math.isfinite(ratios[name]) and ratios[name] > 0, (name, ratios[name])
    assert ratios["training_vs_pythae"] is None and ratios["evaluation_vs_pythae"] is None

    table = (out / "speed.md").read_text()
    assert "| model | contender |" in table and "vaekit" in table and "skipped" in table
    assert "| ratio | measured | target | met |" in table
    assert table.strip() in proc.stdout  # the table is printed too


def test_speed_choices_tiny_times_every_choice_against_its_alternatives(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed_choices.py"), "--tiny", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "speed_choices.json").read_text())
    choices = results["choices"]
    assert len(choices) >= 8
    for what, c in choices.items():
        secs = c["seconds"]
        assert c["choice"] in secs and len(secs) >= 2, what  # the choice and at least one alternative
        assert all(math.isfinite(t) and t > 0 for t in secs.values()), (what, secs)
        for mib in c.get("added_peak_mib", {}).values():
            assert math.isfinite(mib) and mib >= 0, (what, mib)
    # the memory figures the choices rest on: ByteImages holds a quarter of the float32 bytes
    data = next(c for w, c in choices.items() if w.startswith("data:"))
    assert data["bytes"]["float32"] == 4 * data["bytes"]["ByteImages"]
    table = (out / "speed_choices.md").read_text()
    assert "| what | vaekit's choice |" in table and table.strip() in proc.stdout
