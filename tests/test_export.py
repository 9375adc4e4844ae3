"""``vaekit export RUN --format onnx``: the ONNX graphs compute what PyTorch computes, the JSON
beside them documents the input transform, and bad input is refused in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import vaekit  # noqa: E402
from vaekit import ModelConfig, TrainConfig  # noqa: E402
from vaekit.data.prepare import load_examples  # noqa: E402
from vaekit.export import FILES, OPSET, export_onnx  # noqa: E402
from vaekit.runs import load_run  # noqa: E402
from vaekit.version import __version__  # noqa: E402

from cli_helpers import ok, refused  # noqa: E402

COLUMNS = ["height", "weight", "sum", "noise"]


def _train(path: Path, data: str, **model):
    vaekit.train(ModelConfig(hidden=(32,), **{"latent_dim": 2, **model}),
                 TrainConfig(data=data, epochs=1, device="cpu"), path, progress=False)
    return load_run(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs trained once, with their exports: an mlp and a conv VAE on digits, a VAE on a
    standardized table (columns in very different units), and models that are refused."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 2))
    table = np.c_[z[:, 0] * 3 + 170, z[:, 1] * 5 + 70, z.sum(1), rng.normal(size=120)]
    csv = root / "table.csv"
    csv.write_text(",".join(COLUMNS) + "\n" + "\n".join(",".join(f"{v:.4f}" for v in row) for row in table) + "\n")
    runs = {
        "mlp": _train(root / "mlp", "digits"),
        "conv": _train(root / "conv", "digits", arch="conv", conv_channels=(8, 16)),
        "table": _train(root / "table", str(csv)),  # the default for a table: gaussian-lowrank
        "table-diagonal": _train(root / "table-diagonal", str(csv), likelihood="gaussian-learned"),
    }
    exports = {name: export_onnx(run, root / f"{name}-onnx") for name, run in runs.items()}
    return {"runs": runs, "exports": exports, "csv": csv, "table": table, "root": root}


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _heldout(run, n: int) -> torch.Tensor:
    examples = load_examples(run.train_config, "test", data_shape=run.model_config.data_shape,
                             data_info=run.info["data"])
    return examples[torch.arange(n)]["x"].float()


def _decoder_params(run, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """The parameters of PyTorch's p(x|z), by the names the decoder graph gives them."""
    px_z = run.model.decode(z)
    if run.model_config.likelihood == "bernoulli":
        return {"logits": px_z.base_dist.logits}
    if run.model_config.likelihood == "gaussian-lowrank":  # the covariance's parts, from the distribution itself
        flat = px_z.flat
        return {"loc": px_z.mean, "scale": flat.cov_diag.sqrt().reshape(px_z.mean.shape), "cov_factor": flat.cov_factor[0]}
    return {"loc": px_z.base_dist.loc, "scale": px_z.base_dist.scale}


@pytest.mark.parametrize("name", ["mlp", "conv", "table", "table-diagonal"])
@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_matches_pytorch_on_random_and_heldout_inputs(runs, name, batch):
    run = runs["runs"][name]
    encoder, decoder = (_session(p) for p in runs["exports"][name][:2])
    shape, L = run.model_config.data_shape, run.model_config.latent_dim
    gen = torch.Generator().manual_seed(batch)
    table = name.startswith("table")
    random_x = torch.randn((batch, *shape), generator=gen) if table else torch.rand((batch, *shape), generator=gen)
    for x in (random_x, _heldout(run, batch)):
        assert x.shape == (batch, *shape)
        with torch.no_grad():
            qz = run.model.encode({"x": x})
        loc, scale = encoder.run(["loc", "scale"], {"x": x.numpy()})
        assert loc.shape == scale.shape == (batch, L)
        assert np.abs(loc - qz.loc.numpy()).max() < 1e-4
        assert np.abs(scale - qz.scale.numpy()).max() < 1e-4
        for z in (qz.loc, torch.randn((batch, L), generator=gen)):
            want = _decoder_params(run, z)
            got = dict(zip([o.name for o in decoder.get_outputs()], decoder.run(None, {"z": z.numpy()})))
            assert set(got) == set(want)
            for key in want:
                assert got[key].shape == ((math.prod(shape), min(math.prod(shape), 32)) if key == "cov_factor"
                                          else (batch, *shape))
                assert np.abs(got[key] - want[key].detach().numpy()).max() < 1e-4, key
    # the graphs are not constants: different inputs give different codes
    a, b = encoder.run(["loc"], {"x": random_x.numpy()})[0], encoder.run(["loc"], {"x": _heldout(run, batch).numpy()})[0]
    assert np.abs(a - b).max() > 1e-3


def test_the_json_documents_shapes_outputs_versions_and_opset(runs):
    for name, (enc_path, dec_path, json_path) in runs["exports"].items():
        run = runs["runs"][name]
        doc = json.loads(json_path.read_text())
        assert [p.name for p in (enc_path, dec_path, json_path)] == list(FILES)
        assert sorted(p.name for p in json_path.parent.iterdir()) == sorted(FILES)  # no temporaries left
        assert doc["input_shape"] == list(run.model_config.data_shape)
        assert doc["likelihood"] == run.model_config.likelihood and doc["vaekit_version"] == __version__
        assert doc["opset"] == OPSET == onnx.load(str(enc_path)).opset_import[0].version
        assert doc["checked"]["max_abs_diff"] < 1e-4
        for path, part in ((enc_path, "encoder"), (dec_path, "decoder")):
            outputs = [o.name for o in _session(path).get_outputs()]
            assert list(doc[part]["outputs"]) == outputs
            assert all(v["meaning"] for v in doc[part]["outputs"].values())
            (inp,) = _session(path).get_inputs()
            assert list(doc[part]["inputs"]) == [inp.name] and inp.shape[0] == "batch"
    assert list(json.loads(runs["exports"]["mlp"][2].read_text())["decoder"]["outputs"]) == ["logits"]
    assert json.loads(runs["exports"]["mlp"][2].read_text())["transform"]["kind"] == "none"


def test_the_transform_in_the_json_and_the_encoder_reproduce_vaekit_encode(runs, capsys, tmp_path):
    run, (enc_path, dec_path, json_path) = runs["runs"]["table"], runs["exports"]["table"]
    transform = json.loads(json_path.read_text())["transform"]
    assert transform["kind"] == "standardize"
    mean, std = np.array(transform["mean"], np.float32), np.array(transform["std"], np.float32)
    assert mean.shape == std.shape == (len(COLUMNS),) and abs(mean[0] - 170) < 2 and abs(std[1] - 5) < 1.5
    raw = runs["table"].astype(np.float32)
    loc = _session(enc_path).run(["loc"], {"x": (raw - mean) / std})[0]
    ok(capsys, "encode", run.path, "--data", runs["csv"], "-o", tmp_path / "z.npy", "--device", "cpu")
    expected = np.load(tmp_path / "z.npy")
    assert expected.shape == loc.shape == (len(raw), 2)
    assert np.abs(loc - expected).max() < 1e-4
    without = _session(enc_path).run(["loc"], {"x": raw})[0]  # forgetting the transform shows
    assert np.abs(without - expected).max() > 0.1
    # undoing it after the decoder gives vaekit reconstruct's output, in the data's units
    decoded = _session(dec_path).run(["loc"], {"z": loc[:5]})[0] * std + mean
    ok(capsys, "reconstruct", run.path, "--data", runs["csv"], "-n", "5", "-o", tmp_path / "r.npy", "--device", "cpu")
    assert np.abs(decoded - np.load(tmp_path / "r.npy")).max() < 1e-3


def test_vaekit_export_writes_the_three_files_and_replaces_an_earlier_export(runs, capsys, tmp_path):
    out = tmp_path / "onnx"
    r = ok(capsys, "export", runs["runs"]["mlp"].path, "--format", "onnx", "-o", out)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES) and str(out) in r.out
    ok(capsys, "export", runs["runs"]["conv"].path, "--format", "onnx", "-o", out)
    assert json.loads((out / "export.json").read_text())["arch"] == "conv"


@pytest.fixture(scope="module")
def refused_runs(runs):
    root = runs["root"]
    return {"cvae": _train(root / "cvae", "digits", model="cvae"), "ae": _train(root / "ae", "digits", model="ae"),
            "pca": _train(root / "pca", "digits", model="pca", latent_dim=3)}


def test_bad_input_is_refused_in_one_line_with_nothing_written(runs, refused_runs, capsys, tmp_path):
    mlp = runs["runs"]["mlp"].path
    out = tmp_path / "onnx"
    refused(capsys, tmp_path, "export", mlp, "--format", "tflite", "-o", out, says=("--format", "'tflite'"))
    refused(capsys, tmp_path, "export", tmp_path / "nope", "--format", "onnx", "-o", out,
            says=("nope", "no such run directory"))
    refused(capsys, tmp_path, "export", refused_runs["cvae"].path, "--format", "onnx", "-o", out,
            says=("cvae", "conditional", "not exported"))
    for name in ("ae", "pca"):
        refused(capsys, tmp_path, "export", refused_runs[name].path, "--format", "onnx", "-o", out,
                says=(f"'{name}' model", "only the plain VAE"))
    refused(capsys, tmp_path, "export", mlp, "--format", "onnx", "-o", tmp_path / "no" / "onnx",
            says=("does not exist",))
    (tmp_path / "notes.txt").write_text("mine")
    refused(capsys, tmp_path, "export", mlp, "--format", "onnx", "-o", tmp_path, says=("notes.txt", "holds other files"))
    refused(capsys, tmp_path, "export", mlp, "--format", "onnx", "-o", tmp_path / "notes.txt",
            says=("not a directory",))
    refused(capsys, tmp_path, "export", mlp, "--format", "onnx", "-o", mlp, says=("holds other files",))


def test_graphs_that_disagree_with_pytorch_are_not_written(runs, monkeypatch, tmp_path):
    from vaekit import export
    from vaekit.errors import VaekitError

    monkeypatch.setattr(export, "_max_difference", lambda *a: 0.5)
    with pytest.raises(VaekitError, match="differ from PyTorch by 0.5"):
        export_onnx(runs["runs"]["mlp"], tmp_path / "onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_is_one_line_naming_the_extra(runs, capsys, monkeypatch, tmp_path):
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else find(name, *a))
    refused(capsys, tmp_path, "export", runs["runs"]["mlp"].path, "--format", "onnx", "-o", tmp_path / "onnx",
            says=("needs onnx", "pip install 'vaekit[onnx]'"))
