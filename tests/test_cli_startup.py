"""``vaekit --help`` and ``--version`` start fast: neither ``import vaekit`` nor building the
command line imports torch, yet every public name of the package works as before."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vaekit
from vaekit import config
from vaekit.cli import build_parser


def _python(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``python ARGS`` in a fresh process; returns it and its wall time in seconds."""
    start = time.perf_counter()
    p = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)
    return p, time.perf_counter() - start


@pytest.mark.parametrize("flag, says", [("--help", "usage: vaekit"), ("--version", f"vaekit {vaekit.__version__}")])
def test_help_and_version_answer_fast(flag, says):
    p, seconds = _python("-m", "vaekit", flag)
    assert p.returncode == 0, p.stderr
    assert says in p.stdout and p.stderr == ""
    # about 0.3 s here, where importing torch alone takes 2.4 s; the bound is loose so as never
    # to be flaky (test_the_package_and_the_parser_import_no_torch checks torch precisely)
    assert seconds < 2.0, f"python -m vaekit {flag} took {seconds:.2f} s"


def test_the_package_and_the_parser_import_no_torch():
    code = ("import sys, vaekit.cli; vaekit.cli.build_parser(); vaekit.cli.build_parser('burda-1layer'); "
            "print(sorted(m for m in ('torch', 'numpy', 'vaekit.models', 'vaekit.data') if m in sys.modules))")
    p, _ = _python("-c", code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_every_public_name_resolves_to_its_module_attribute():
    import importlib

    for module, names in vaekit._EXPORTS.items():
        defining = importlib.import_module(module, "vaekit")
        for name in names:
            assert getattr(vaekit, name) is getattr(defining, name), name
    assert set(dir(vaekit)) >= set(vaekit.__all__)
    assert vaekit.plots.__name__ == "vaekit.plots"  # submodules, as the eager imports left them
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        vaekit.nosuch


def test_type_checkers_see_the_same_names_as_the_lazy_exports():
    tree = ast.parse(Path(vaekit.__file__).read_text())
    (block,) = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    seen = {"." * node.level + node.module: tuple(a.name for a in node.names) for node in block.body}
    assert {m: set(n) for m, n in seen.items()} == {m: set(n) for m, n in vaekit._EXPORTS.items()}


def test_builtin_names_match_the_registries():
    """config's torch-free name lists, which the parser offers, are the registries' contents."""
    from vaekit.data.builtin import DATASETS
    from vaekit.models import MODELS, PRIORS
    from vaekit.models.likelihoods import LIKELIHOODS
    from vaekit.models.networks import ARCHS

    assert set(config.MODEL_NAMES) == set(MODELS)
    assert set(config.PRIOR_NAMES) == set(PRIORS)
    assert set(config.LIKELIHOOD_NAMES) == set(LIKELIHOODS)
    assert set(config.ARCH_NAMES) == set(ARCHS)
    assert set(config.DATASET_NAMES) == set(DATASETS)


def test_the_parser_offers_names_registered_in_this_process(monkeypatch):
    from vaekit.models import PRIORS

    monkeypatch.setitem(PRIORS, "wide-test", object)
    args = build_parser().parse_args(["train", "--prior", "wide-test"])
    assert args.prior == "wide-test"
    monkeypatch.delitem(PRIORS, "wide-test")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--prior", "wide-test"])
