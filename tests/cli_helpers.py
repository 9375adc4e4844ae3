"""Helpers for the command-line tests: run ``vaekit`` in-process and check refusals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from vaekit.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def vaekit_cli(capsys: pytest.CaptureFixture, *argv: object) -> Result:
    """Run ``vaekit ARGV`` in-process; argparse's exits become a status like any other."""
    capsys.readouterr()  # drop what came before
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return Result(code, out, err)


def ok(capsys: pytest.CaptureFixture, *argv: object) -> Result:
    """Run a command that must succeed, quietly on stderr."""
    r = vaekit_cli(capsys, *argv)
    assert r.code == 0, r.err
    assert "Traceback" not in r.err and "error" not in r.err.lower(), r.err
    return r


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included), by relative path; folders as b'/'."""
    return {str(p.relative_to(folder)): (b"/" if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def refused(capsys: pytest.CaptureFixture, watch: Path | list[Path], *argv: object, says: tuple[str, ...]) -> str:
    """Run a command that must be refused; returns its one line of stderr.

    ``says``: substrings the line must hold (the input it names, the problem). Nothing under
    ``watch`` (a folder or several) may be created, changed or removed.
    """
    folders = watch if isinstance(watch, list) else [watch]
    before = [snapshot(f) for f in folders]
    r = vaekit_cli(capsys, *argv)
    assert r.code == 2, (r.code, r.err)
    assert "Traceback" not in r.err
    lines = r.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{r.err}"
    line = lines[0]
    assert line.startswith("vaekit") and ": error: " in line, line
    for s in says:
        assert s in line, f"{s!r} not in {line!r}"
    assert r.out == ""
    assert [snapshot(f) for f in folders] == before, "a refused command wrote or changed files"
    return line


def poison_once(at_step: int):
    """A batch hook that makes one batch NaN: the first one seen at step ``at_step`` (a skipped
    batch leaves the step count where it was, so the next batch is seen at the same step)."""
    done = []

    def hook(step, batch):
        if step == at_step and not done:
            done.append(step)
            return {**batch, "x": batch["x"] * float("nan")}
        return batch

    return hook
