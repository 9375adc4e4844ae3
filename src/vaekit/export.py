"""A trained VAE as two ONNX graphs, for inference without vaekit or PyTorch.

``export_onnx(run, out_dir)`` writes into ``out_dir``:

- ``encoder.onnx``: input ``x`` ``(batch, *data_shape)`` (the data as the model saw it, i.e.
  after the run's input transform) to outputs ``loc`` and ``scale`` ``(batch, latent_dim)``, the
  mean and standard deviation of ``q(z|x)``;
- ``decoder.onnx``: input ``z`` ``(batch, latent_dim)`` to the parameters of ``p(x|z)``, each
  ``(batch, *data_shape)``: ``logits`` for the Bernoulli likelihoods, ``loc`` and ``scale`` for
  the Gaussian ones (``gaussian-lowrank`` adds ``cov_factor``, ``(D, r)``, no batch axis);
- ``export.json``: what a user needs to call them: the input shape, the run's input transform
  (standardize: apply ``(x - mean) / std`` before the encoder, ``x * std + mean`` after the
  decoder), the likelihood and what each output means, the versions and the opset.

Both graphs have a dynamic batch axis. Only the plain VAE (``--model vae``, one stochastic
layer, no labels) is exported; other models are refused in one line. The three files are built
and checked in memory (with onnxruntime, when it is installed, against PyTorch) before any is
written; then each is written atomically.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import VaekitError

#: the ONNX opset the graphs use (the TorchScript-based exporter's well-trodden range)
OPSET = 17
FILES = ("encoder.onnx", "decoder.onnx", "export.json")
#: the most the onnxruntime check lets the graphs differ from PyTorch (float32 arithmetic)
TOLERANCE = 1e-3

#: the decoder's outputs by likelihood: name -> meaning
DECODER_OUTPUTS: dict[str, dict[str, str]] = {
    "bernoulli": {
        "logits": "log-odds of p(x|z) = Bernoulli(sigmoid(logits)) per data dimension; the decoded mean is "
                  "sigmoid(logits)",
    },
    "continuous-bernoulli": {
        "logits": "log-odds parameter of the continuous Bernoulli p(x|z) per data dimension (its mean is not "
                  "sigmoid(logits): mean = p/(2p-1) + 1/(2 atanh(1-2p)) with p = sigmoid(logits), 1/2 at p = 1/2)",
    },
    "gaussian": {
        "loc": "mean of p(x|z) = Normal(loc, scale) per data dimension: the decoded mean",
        "scale": "standard deviation of p(x|z), the fixed sqrt(gaussian_variance), the same for every entry",
    },
    "gaussian-learned": {
        "loc": "mean of p(x|z) = Normal(loc, scale) per data dimension: the decoded mean",
        "scale": "standard deviation of p(x|z) per data dimension, learned (the same for every z)",
    },
    "gaussian-lowrank": {
        "loc": "mean of p(x|z) = MultivariateNormal(loc, cov_factor cov_factor^T + diag(scale^2)) over the "
               "flattened data dimensions: the decoded mean",
        "scale": "the diagonal part's standard deviation per data dimension, learned (the same for every z)",
        "cov_factor": "W, (data dimensions flattened, rank), learned, the same for every z: the covariance of "
                      "p(x|z) is W W^T + diag(scale^2); no batch axis",
    },
}
#: decoder outputs without a batch axis: their shape, from the data's size D and the likelihood's rank r
STATIC_OUTPUTS = {"cov_factor": lambda likelihood: list(likelihood.cov_factor.shape)}


class _EncoderGraph(nn.Module):
    """``x -> (loc, scale)`` of ``q(z|x)``, plain tensors."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        loc, scale, _ = self.encoder.params(x)
        return loc, scale


class _DecoderGraph(nn.Module):
    """``z -> `` the parameters of ``p(x|z)``, plain tensors, in :data:`DECODER_OUTPUTS`'s order."""

    def __init__(self, decoder: nn.Module, likelihood: nn.Module):
        super().__init__()
        self.decoder, self.likelihood = decoder, likelihood

    def forward(self, z: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        out = self.decoder(z)
        if self.likelihood.name in ("bernoulli", "continuous-bernoulli"):
            return out
        scale = torch.ones_like(out) * self.likelihood.scale.to(out.dtype)  # shaped as out
        if self.likelihood.name == "gaussian-lowrank":
            return out, scale, self.likelihood.cov_factor.to(out.dtype) * 1  # an output of its own, not an input
        return out, scale


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """The folder to export into: a new folder in an existing one, an empty folder, or one that
    holds only a previous export's files (replaced). Anything else is refused: an export never
    mixes its files with others, nor overwrites what it did not write."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VaekitError(f"{out}: exists and is not a directory; export into a new or empty folder")
    if not out.exists():
        if not out.parent.is_dir():
            raise VaekitError(f"{out}: folder {out.parent} does not exist")
        return out
    others = sorted(p.name for p in out.iterdir() if p.name not in FILES)
    if others:
        raise VaekitError(f"{out}: holds other files ({others[0]}{', ...' if len(others) > 1 else ''}); "
                          f"export into a new or empty folder (only {', '.join(FILES)} of an earlier export are replaced)")
    return out


def check_exportable(run) -> None:
    """Refuse, in one line, a model that the two graphs cannot express."""
    from .models.vae import VAE

    model, cfg = run.model, run.model_config
    if cfg.model == "cvae" or getattr(model, "conditions", ()):
        raise VaekitError(f"{run.path}: a conditional model ({cfg.model!r}) is not exported to ONNX "
                          "(its networks need the labels); export a --model vae run")
    if type(model) is not VAE:
        kind = "a two-layer VAE (--latent-dims)" if cfg.model == "vae" else f"a {cfg.model!r} model"
        raise VaekitError(f"{run.path}: {kind} is not exported to ONNX; only the plain VAE (--model vae, one "
                          "stochastic layer) is")
    if cfg.likelihood not in DECODER_OUTPUTS:
        raise VaekitError(f"{run.path}: the {cfg.likelihood!r} likelihood is not exported to ONNX; supported: "
                          f"{', '.join(DECODER_OUTPUTS)}")


def _to_onnx(module: nn.Module, example: Tensor, input_name: str, output_names: list[str]) -> bytes:
    buf = io.BytesIO()
    axes = {name: {0: "batch"} for name in [input_name, *output_names] if name not in STATIC_OUTPUTS}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        try:
            torch.onnx.export(module, (example,), buf, input_names=[input_name], output_names=output_names,
                              dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)
        except Exception as e:  # noqa: BLE001 - an unsupported layer, say: one line, nothing written
            first = (str(e).strip().splitlines() or [""])[0]
            raise VaekitError(f"torch.onnx could not export the network reading {input_name!r} "
                              f"({type(e).__name__}: {first})") from None
    return _name_outputs(buf.getvalue(), output_names)


def _name_outputs(data: bytes, names: list[str]) -> bytes:
    """Give every graph output its name: an output that constant folding turned into a stored
    tensor (``cov_factor``, which does not depend on ``z``) keeps the folded tensor's number as
    its name; an ``Identity`` node renames it."""
    import onnx
    from onnx import helper

    graph_model = onnx.load_from_string(data)
    graph = graph_model.graph
    if [o.name for o in graph.output] == names:
        return data
    for out, name in zip(graph.output, names):
        if out.name != name:
            graph.node.append(helper.make_node("Identity", [out.name], [name]))
            out.name = name
    return graph_model.SerializeToString()


def _check_graph(data: bytes, what: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(onnx.load_from_string(data))
    except Exception as e:  # noqa: BLE001 - any checker complaint is one line
        raise VaekitError(f"the exported {what} is not a valid ONNX graph ({type(e).__name__}: {e})") from None


def _max_difference(data: bytes, module: nn.Module, example: Tensor, input_name: str) -> float:
    """The largest absolute difference between onnxruntime's outputs and PyTorch's on ``example``."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {input_name: example.numpy()})
    with torch.no_grad():
        want = module(example)
    want = want if isinstance(want, tuple) else (want,)
    return max(float((torch.from_numpy(g) - w).abs().max()) for g, w in zip(got, want))


def _transform_doc(data_info: dict[str, Any]) -> dict[str, Any]:
    transform = dict(data_info.get("transform") or {"kind": "none"})
    if transform.get("kind") == "standardize":
        transform["apply"] = ("before encoder.onnx: x_model = (x - mean) / std, per column, with the training "
                              "split's mean and std")
        transform["undo"] = ("after decoder.onnx: x = x_model * std + mean for the decoded mean (loc); a "
                             "scale in the data's units is scale * std")
    else:
        transform["apply"] = "none: feed the data as the model was trained on it"
    return transform


def export_onnx(run, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``export.json`` of ``run`` (a loaded run,
    :func:`vaekit.runs.load_run`) into ``out_dir``; returns the three paths.

    ``out_dir`` is created when its parent exists; an existing one must be empty or hold only
    an earlier export (see :func:`check_out_dir`). Nothing is written when anything fails.
    """
    import onnx  # noqa: F401 - needed to check the graphs; the CLI names the extra to install

    from .runs import _fsync_dir, stage
    from .version import __version__

    out = check_out_dir(out_dir)
    check_exportable(run)
    cfg = run.model_config
    model = run.model if run.model.device.type == "cpu" else copy.deepcopy(run.model).cpu()
    model.eval()
    dtype = next(model.parameters()).dtype
    shape = tuple(cfg.data_shape)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((3, *shape), generator=gen, dtype=dtype)
    z = torch.randn((3, cfg.latent_dim), generator=gen, dtype=dtype)
    enc, dec = _EncoderGraph(model.encoder).eval(), _DecoderGraph(model.decoder, model.likelihood).eval()
    dec_outputs = list(DECODER_OUTPUTS[cfg.likelihood])
    enc_bytes = _to_onnx(enc, x[:2], "x", ["loc", "scale"])
    dec_bytes = _to_onnx(dec, z[:2], "z", dec_outputs)
    _check_graph(enc_bytes, "encoder")
    _check_graph(dec_bytes, "decoder")
    checked: dict[str, Any] | None = None  # without onnxruntime, the graphs are checked by onnx alone
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        # three examples where the graphs were traced with two: the batch axis is dynamic
        worst = max(_max_difference(enc_bytes, enc, x, "x"), _max_difference(dec_bytes, dec, z, "z"))
        if not worst <= TOLERANCE:
            raise VaekitError(f"{run.path}: the exported graphs differ from PyTorch by {worst:.3g} (more than "
                              f"{TOLERANCE:g}); nothing written")
        checked = {"onnxruntime": onnxruntime.__version__, "max_abs_diff": worst}
    data_info = run.info.get("data") or {}
    batch = "batch"
    doc = {
        "format": "onnx",
        "opset": OPSET,
        "vaekit_version": __version__,
        "torch_version": torch.__version__,
        "run": str(run.path),
        "model": cfg.model,
        "arch": cfg.arch,
        "latent_dim": cfg.latent_dim,
        "prior": cfg.prior,
        "likelihood": cfg.likelihood,
        "gaussian_variance": cfg.gaussian_variance if cfg.likelihood == "gaussian" else None,
        "input_shape": list(shape),
        "dtype": str(dtype).removeprefix("torch."),
        "data": {k: data_info.get(k) for k in ("name", "kind", "columns") if data_info.get(k) is not None},
        "binarize": run.train_config.binarize,
        "transform": _transform_doc(data_info),
        "encoder": {
            "file": "encoder.onnx",
            "inputs": {"x": {"shape": [batch, *shape], "meaning": "examples, after the input transform"}},
            "outputs": {
                "loc": {"shape": [batch, cfg.latent_dim], "meaning": "mean of q(z|x): the latent code (vaekit encode)"},
                "scale": {"shape": [batch, cfg.latent_dim], "meaning": "standard deviation of q(z|x) per latent unit"},
            },
        },
        "decoder": {
            "file": "decoder.onnx",
            "inputs": {"z": {"shape": [batch, cfg.latent_dim],
                             "meaning": f"latent codes (the run's prior p(z) is {cfg.prior!r}; 'standard' is N(0, I))"}},
            "outputs": {name: {"shape": STATIC_OUTPUTS[name](model.likelihood) if name in STATIC_OUTPUTS
                               else [batch, *shape], "meaning": meaning}
                        for name, meaning in DECODER_OUTPUTS[cfg.likelihood].items()},
        },
        "checked": checked,
    }
    paths = [out / name for name in FILES]
    contents = [enc_bytes, dec_bytes, (json.dumps(doc, indent=2) + "\n").encode()]
    created = not out.exists()
    staged = []
    try:
        out.mkdir(exist_ok=True)
        for path, data in zip(paths, contents):
            staged.append(stage(path, [data]))
    except BaseException as e:
        for s in staged:
            s.discard()
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if isinstance(e, OSError):
            raise VaekitError(f"{out}: cannot write the export ({e.strerror or e})") from None
        raise
    for s in staged:
        s.commit()
    _fsync_dir(out)
    return paths
