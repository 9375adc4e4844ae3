"""The declared torch floor (pyproject.toml) against the torch APIs vaekit uses, and no private torch API.

``INTRODUCED`` names each torch API of ``src/vaekit`` that is newer than the oldest torch anyone
would try, with the release that introduced it. The floor must be at least the newest of them,
every one must exist in the installed torch and still be used by vaekit (so the table does not
outlive the code), and pyproject's comment must name the API that sets the floor.
"""

from __future__ import annotations

import ast
import importlib
import io
import re
import tokenize
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
SRC = ROOT / "src" / "vaekit"

# api -> the torch release that introduced it (documented "added in", or the release after the PR).
INTRODUCED = {
    # pytorch/pytorch#139662, merged 2024-11-07, after 2.5.0 (2024-10-17): first released in 2.6.0.
    "torch.nn.utils.get_total_norm": "2.6",
    "torch.nn.utils.clip_grads_with_norm_": "2.6",
    "torch.optim.lr_scheduler.LRScheduler": "2.0",  # public name of _LRScheduler from 2.0
    "torch.linalg.solve_triangular": "1.11",
    "torch.autocast": "1.10",
    "torch.inference_mode": "1.9",
    "torch.linalg.svdvals": "1.9",
}


def _fused_adam_on_cpu() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    torch.optim.Adam([p], lr=0.1, fused=True).step()  # before 2.4: RuntimeError (CUDA only)
    assert torch.all(p < 1)


# Behaviours rather than names: description -> (release, a check that raises without it).
# vaekit.training.loop falls back to foreach Adam without the fused CPU kernel, but is slower.
FEATURES = {
    "fused Adam on the CPU (pytorch/pytorch#123074)": ("2.4", _fused_adam_on_cpu),
}


def _torch_requirement() -> Requirement:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (req,) = [Requirement(d) for d in deps if Requirement(d).name == "torch"]
    return req


def _floor(req: Requirement) -> Version:
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "~=", "==")]
    assert floors, f"pyproject.toml: {req} declares no lower bound for torch"
    return max(floors)


def _resolve(dotted: str):
    """The object a dotted name like ``torch.nn.utils.get_total_norm`` names, importing modules on the way."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, name in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[: i + 1]))
    return obj


def _newest() -> tuple[Version, list[str]]:
    versions = {**{k: Version(v) for k, v in INTRODUCED.items()}, **{k: Version(v) for k, (v, _) in FEATURES.items()}}
    top = max(versions.values())
    return top, sorted(k for k, v in versions.items() if v == top)


def _sources() -> dict[Path, str]:
    files = {p: p.read_text() for p in sorted(SRC.rglob("*.py"))}
    assert len(files) > 10, f"found only {len(files)} modules under {SRC}"
    return files


def test_declared_torch_floor_covers_every_api_in_the_table():
    floor = _floor(_torch_requirement())
    newest, which = _newest()
    assert floor >= newest, f"pyproject.toml declares torch>={floor}, but {which} need torch {newest}"


def test_pyproject_comment_names_the_api_that_sets_the_floor():
    line = next(l for l in PYPROJECT.read_text().splitlines() if re.match(r'\s*"torch\s*[<>=~!]', l))
    _, which = _newest()
    named = [api for api in which if api.rsplit(".", 1)[-1] in line.partition("#")[2]]
    assert named, f"pyproject.toml's torch line should say which API sets the floor ({which}): {line.strip()}"


@pytest.mark.parametrize("api", sorted(INTRODUCED))
def test_each_api_exists_in_installed_torch_and_is_used_by_vaekit(api):
    assert callable(_resolve(api)), api
    name = api.rsplit(".", 1)[-1]
    users = [p.relative_to(ROOT) for p, text in _sources().items() if re.search(rf"\b{re.escape(name)}\b", text)]
    assert users, f"{api} is no longer used under src/vaekit: drop it from INTRODUCED (the floor may fall)"


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_each_feature_works_in_installed_torch(feature):
    FEATURES[feature][1]()


def test_installed_torch_meets_the_declared_floor():
    installed = Version(Version(torch.__version__).base_version)
    assert installed >= _floor(_torch_requirement()), (torch.__version__, str(_torch_requirement()))


def _private_torch_uses(text: str) -> list[tuple[int, str]]:
    """Private torch names used by a module: attributes (``torch._foo``, ``torch.utils._foo.bar``),
    ``getattr(torch, "_foo")``, and imports from private modules; dunders such as
    ``torch.__version__`` are public. Comments and strings other than getattr's are ignored."""
    tree = ast.parse(text)
    roots = set()  # names bound to torch or to something imported from it
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "torch"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            roots |= {a.asname or a.name for a in node.names}

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    def dotted(node) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in roots:
            return ".".join([node.id, *reversed(parts)])
        return None

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr) and dotted(node):
            found.append((node.lineno, dotted(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and len(node.args) >= 2 and dotted(node.args[0]) and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and private(node.args[1].value)):
            found.append((node.lineno, f"{node.func.id}({dotted(node.args[0])}, {node.args[1].value!r})"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            if any(private(p) for p in node.module.split(".")) or any(private(a.name) for a in node.names):
                found.append((node.lineno, f"from {node.module} import {', '.join(a.name for a in node.names)}"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names
                      if a.name.split(".")[0] == "torch" and any(private(p) for p in a.name.split("."))]
    return sorted(set(found))


def test_the_private_api_scan_finds_what_it_should():
    """The scan itself, on snippets: each form is found, public and dunder names are not."""
    cases = {
        "import torch\ntorch._amp_foreach_non_finite_check_and_unscale_(g, f, u)\n": 1,
        "import torch\nf = getattr(torch, '_amp_foreach_non_finite_check_and_unscale_', None)\n": 1,
        "import torch as T\nT.nn.utils._foreach_norm(x)\n": 1,
        "from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype\n": 1,
        "from torch import nn\nnn.utils._stateless\n": 1,
        "import torch\nv = torch.__version__\nn = torch.nn.utils.get_total_norm(g)\n# torch._secret in a comment\n": 0,
        "import numpy as np\nnp._core\n": 0,
    }
    for snippet, n in cases.items():
        assert len(_private_torch_uses(snippet)) == n, (snippet, _private_torch_uses(snippet))
    assert re.search(r"torch\._[a-z]", "torch._amp_foreach") and not re.search(r"torch\._[a-z]", "torch.__version__")


def _code_only(text: str) -> str:
    """The module's text with comments and string literals blanked (docstrings may name anything)."""
    skip = {tokenize.COMMENT, tokenize.STRING, tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}  # f-string text (3.12+)
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    out = [(tok.start, tok.string) for tok in tokens if tok.type not in skip]
    lines = [""] * (len(text.splitlines()) + 1)
    for (row, col), string in out:
        line = lines[row - 1]
        lines[row - 1] = line + " " * max(0, col - len(line)) + string
    return "\n".join(lines)


def test_vaekit_uses_no_private_torch_api():
    found = {}
    for path, text in _sources().items():
        uses = _private_torch_uses(text)
        # the plain pattern too, over the code without comments and strings: a net under the tree
        code = _code_only(text)
        uses += [(code.count("\n", 0, m.start()) + 1, m.group()) for m in re.finditer(r"\btorch\._[a-z]\w*", code)]
        if uses:
            found[str(path.relative_to(ROOT))] = sorted(set(uses))
    assert not found, f"private torch API (it may change or vanish in any release): {found}"
