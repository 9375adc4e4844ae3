"""Training that survives, and the schedules it follows, on the embedded digits (tiny networks).

Exact resume (between epochs, inside an epoch, after a SIGKILL while a checkpoint was being
written), the NaN guard, the KL weight and free bits, learning-rate schedules, early stopping,
DistributedDataParallel through ``torchrun``, refused checkpoints, TensorBoard events.

"Exact" means bit for bit on the CPU: every random draw comes from the run's one generator,
so a resumed run takes the steps of the uninterrupted one.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from cli_helpers import poison_once

from vaekit.training import checkpoint as ckpt
from vaekit import runs
from vaekit.cli import main
from vaekit.config import ModelConfig, TrainConfig
from vaekit.errors import VaekitError
from vaekit.models.vae import VAE
from vaekit.training.schedules import kl_beta, lr_factor
from vaekit.training import resume, train

MODEL = ModelConfig(latent_dim=4, hidden=(32,), likelihood="bernoulli")
CLI_MODEL = ("--hidden", "32", "--latent-dim", "4", "--likelihood", "bernoulli", "--device", "cpu")
N_BATCHES = 11  # ceil(1295 / 128): digits' 1438 training images less the 10 % held out


def config(**changes) -> TrainConfig:
    return TrainConfig(**{"data": "digits", "epochs": 3, "batch_size": 128, "device": "cpu", **changes})


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / runs.WEIGHTS))


def assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"not bit for bit equal: {differ}"


def rows(run: Path) -> list[dict[str, str]]:
    return runs.read_metrics(run)


def timeless(rs: list[dict[str, str]]) -> list[dict[str, str]]:
    """Metrics rows without the wall-clock columns, the one thing a resumed run may change."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "checkpoint_seconds")} for r in rs]


def leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if ".tmp" in p.name)


def vaekit_process(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120):
    """``python -m vaekit ARGS``; the crash switch only where ``env`` sets it."""
    base = {k: v for k, v in os.environ.items() if k != "VAEKIT_TEST_CRASH_CHECKPOINT"}
    return subprocess.run([sys.executable, "-m", "vaekit", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def refused_in_one_line(code: int, out: str, err: str, *says: str) -> None:
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("vaekit: error: ")
    for s in says:
        assert s in err, err


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """Runs here skip their PNG figures (half a second each; tested with the CLI)."""
    import vaekit.plots

    monkeypatch.setattr(vaekit.plots, "save_run_figures", lambda *args, **kwargs: None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted 5-epoch run; its weights after epoch 3 are a 3-epoch run's (constant lr)."""
    run = tmp_path_factory.mktemp("reference") / "run"
    after: dict[int, dict[str, torch.Tensor]] = {}

    def keep(row, model):
        after[row["epoch"]] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    train(MODEL, config(epochs=5), run, callback=keep, progress=False)
    assert [int(r["step"]) for r in rows(run)] == [N_BATCHES * e for e in range(1, 6)]
    return {"run": run, "rows": rows(run), 3: after[3], 5: weights(run)}


# -- 1. resume --------------------------------------------------------------------------------

def test_resume_between_epochs_is_the_uninterrupted_run(tmp_path, reference):
    run = tmp_path / "run"
    train(MODEL, config(epochs=3), run, progress=False)
    assert_same_weights(weights(run), reference[3])
    resume(run, epochs=5, progress=False)
    assert_same_weights(weights(run), reference[5])
    got = rows(run)
    assert [r["epoch"] for r in got] == ["1", "2", "3", "4", "5"]
    assert timeless(got) == timeless(reference["rows"])
    assert ckpt.load_checkpoint(run / ckpt.LAST).progress.epoch == 5


@pytest.mark.parametrize("stop_at", [16, 5], ids=["in-epoch-2", "in-epoch-1"])
def test_resume_inside_an_epoch_is_the_uninterrupted_run(tmp_path, reference, stop_at):
    """Checkpoints every 3 steps; Ctrl-C before step ``stop_at`` + 1: resumed from the
    mid-epoch checkpoint after step 15 (epoch 2) or step 3 (epoch 1, before any weights)."""
    run = tmp_path / "run"

    def interrupt(step, batch):
        if step == stop_at:
            raise KeyboardInterrupt
        return batch

    with pytest.raises(KeyboardInterrupt):
        train(MODEL, config(epochs=5, checkpoint_every=3), run, batch_hook=interrupt, progress=False)
    saved = ckpt.load_checkpoint(run / ckpt.LAST).progress
    last = stop_at // 3 * 3
    assert (saved.step, saved.epoch, saved.batch) == (last, last // N_BATCHES, last % N_BATCHES)
    assert saved.batch > 0  # inside an epoch
    resume(run, progress=False)
    assert_same_weights(weights(run), reference[5])
    assert timeless(rows(run)) == timeless(reference["rows"])


def test_a_mid_epoch_checkpoint_from_before_issue_11_resumes_exactly(tmp_path, reference):
    """Its epoch sums were saved without the count of examples they cover (``epoch_sums``)."""
    from safetensors import safe_open
    from safetensors.torch import save

    run = tmp_path / "run"

    def interrupt(step, batch):
        if step == 16:
            raise KeyboardInterrupt
        return batch

    with pytest.raises(KeyboardInterrupt):
        train(MODEL, config(epochs=5, checkpoint_every=3), run, batch_hook=interrupt, progress=False)
    with safe_open(str(run / ckpt.LAST), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    counted = tensors.pop("extra/epoch_sums_counted")
    tensors["extra/epoch_sums"] = counted[:-1].clone()  # the old layout: the sums alone
    (run / ckpt.LAST).write_bytes(save(tensors, metadata=meta))
    resume(run, progress=False)
    assert_same_weights(weights(run), reference[5])
    assert timeless(rows(run)) == timeless(reference["rows"])


# -- 2. a crash while a checkpoint is written -------------------------------------------------

def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, reference):
    run = tmp_path / "run"
    args = ("train", "--data", "digits", "--epochs", "3", "--batch-size", "128", *CLI_MODEL)
    # the 2nd checkpoint is epoch 2's: the process kills itself 100 bytes into its temporary file
    crashed = vaekit_process(*args, "--run-dir", str(run), cwd=tmp_path,
                             env={"VAEKIT_TEST_CRASH_CHECKPOINT": "2:100"})
    assert crashed.returncode == -9, crashed.stderr
    (tmp,) = [p for p in run.iterdir() if ".tmp-" in p.name]  # the half-written file is there
    assert tmp.stat().st_size == 100
    assert ckpt.load_checkpoint(run / ckpt.LAST).progress.epoch == 1

    resumed = vaekit_process("train", "--resume", str(run), cwd=tmp_path)  # no crash this time
    assert resumed.returncode == 0, resumed.stderr
    assert f"run directory: {run}" in resumed.stdout
    assert_same_weights(weights(run), reference[3])
    assert timeless(rows(run)) == timeless(reference["rows"][:3])
    assert leftovers(run) == []


# -- 3. the NaN guard -------------------------------------------------------------------------

def test_nan_stops_naming_where_and_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    at = N_BATCHES + 2  # 13 steps taken: the 3rd batch of epoch 2, the 14th step, goes bad
    with pytest.raises(VaekitError) as e:
        train(MODEL, config(on_nan="stop"), run, batch_hook=poison_once(at), progress=False)
    msg = str(e.value)
    assert "epoch 2, step 14" in msg, msg
    assert "non-finite reconstruction" in msg, msg  # the part, not the total it makes non-finite
    assert str(run / ckpt.LAST) in msg
    saved = ckpt.load_checkpoint(run / ckpt.LAST).progress
    assert (saved.epoch, saved.step, saved.batch) == (1, N_BATCHES, 0)
    assert [r["epoch"] for r in rows(run)] == ["1"]


def test_nan_skip_counts_the_skipped_batch(tmp_path):
    run = tmp_path / "run"
    train(MODEL, config(on_nan="skip"), run, batch_hook=poison_once(5), progress=False)
    got = rows(run)
    assert [r["nan_skipped"] for r in got] == ["1", "1", "1"]  # a running count
    assert [int(r["step"]) for r in got] == [N_BATCHES - 1, 2 * N_BATCHES - 1, 3 * N_BATCHES - 1]
    assert all(math.isfinite(float(r["train_elbo"])) for r in got)


def test_cli_divergence_is_one_line_and_leaves_nothing(capsys, tmp_path):
    run = tmp_path / "run"
    code = main(["train", "--data", "digits", "--epochs", "1", "--lr", "1e30", "--run-dir", str(run), *CLI_MODEL])
    out, err = capsys.readouterr()
    talk, last = err.strip().splitlines()[:-1], err.strip().splitlines()[-1]
    assert talk and all(line.startswith("vaekit: ") and "error" not in line for line in talk)  # what it chose
    refused_in_one_line(code, out, last, "non-finite", "epoch 1", "--on-nan skip")  # then one line
    assert not run.exists()  # no epoch finished: no half-written run


# -- 4. the KL weight and free bits -----------------------------------------------------------

def test_kl_beta_ramps_linearly_by_step():
    cfg = config(beta=0.8, kl_warmup_steps=10)
    assert kl_beta(cfg, 0) == 0
    assert kl_beta(cfg, 5) == pytest.approx(0.4)
    assert [kl_beta(cfg, s) for s in range(11)] == pytest.approx([0.08 * s for s in range(11)])
    assert kl_beta(cfg, 10) == kl_beta(cfg, 1000) == 0.8
    assert kl_beta(config(beta=0.8), 0) == 0.8  # no warm-up


SCHEDULED = config(beta=0.3, kl_warmup_steps=20, lr=0.01, lr_schedule="cosine", lr_warmup_steps=15)


@pytest.fixture(scope="module")
def scheduled_run(tmp_path_factory) -> list[dict[str, str]]:
    """The metrics of a 3-epoch run with a KL warm-up to beta 0.3 and a warmed-up cosine lr."""
    run = tmp_path_factory.mktemp("scheduled") / "run"
    train(MODEL, SCHEDULED, run, progress=False)
    return rows(run)


def test_metrics_log_beta_and_the_true_elbo(scheduled_run):
    """A row's beta (like its lr) is the value after its ``step`` steps: the next step's."""
    cfg, got = SCHEDULED, scheduled_run
    assert [float(r["beta"]) for r in got] == pytest.approx([kl_beta(cfg, int(r["step"])) for r in got], abs=1e-6)
    assert float(got[0]["beta"]) == pytest.approx(0.3 * N_BATCHES / 20, abs=1e-6)  # still warming up
    for r in got:
        rec, kl = float(r["train_reconstruction"]), float(r["train_kl"])
        assert kl > 0.01  # large enough for elbo = rec - kl to differ from rec - 0.3 kl
        assert float(r["train_elbo"]) == pytest.approx(rec - kl, abs=1e-5)
        assert float(r["val_elbo"]) == pytest.approx(float(r["val_reconstruction"]) - float(r["val_kl"]), abs=1e-5)


def tiny_vae(seed: int = 0) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    """A VAE on 8x8 binary images, a batch and its reparameterization noise ``(B, L)``, as
    ``draw_noise`` gives it (``elbo`` takes it sample-first, ``noise[None]``)."""
    torch.manual_seed(seed)
    model = VAE(ModelConfig(data_shape=(1, 8, 8), latent_dim=4, hidden=(32,), likelihood="bernoulli"))
    x = (torch.rand(16, 1, 8, 8) < 0.3).float()
    return model, x, torch.randn(16, 4)


def test_training_loss_weights_the_kl_but_reports_the_elbo():
    model, x, noise = tiny_vae()
    loss, terms = model.training_loss(x, beta=0.3, noise=noise)
    assert loss.shape == (16,)
    torch.testing.assert_close(loss, -(terms.reconstruction - 0.3 * terms.kl))
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)
    assert (terms.kl > 0).all()  # so that the two differ
    same = model.elbo(x, noise=noise[None])  # the ELBO every figure uses, under the same noise
    for a, b in zip(terms, same):
        torch.testing.assert_close(a, b)
    loss1, _ = model.training_loss(x, beta=1.0, noise=noise)
    torch.testing.assert_close(loss1, -same.elbo)


def logvar_grad(model: VAE, loss: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss.sum(), model.encoder.logvar_head.weight)
    return g  # (L, hidden): row j moves only dimension j's variance


def test_free_bits_stop_the_kl_gradient_below_the_floor():
    """Free bits (Kingma et al. 2016, eq. 15) by each dimension's batch-mean KL: below the floor
    the KL pulls the encoder no more; above it, every example's KL pulls, even one under it."""
    model, x, noise = tiny_vae()
    with torch.no_grad():  # dimensions 0 and 1 far from the prior, 2 and 3 near it
        model.encoder.loc_head.bias.copy_(torch.tensor([3.0, -4.0, 0.0, 0.0]))
    from torch.distributions import Normal, kl_divergence

    with torch.no_grad():
        qz = model.encode(x)
        kl_dims = kl_divergence(Normal(qz.mean, qz.stddev), Normal(0.0, 1.0))  # (B, L), torch's closed form
        # the floor below is set against these; they must be the KL the model itself reports
        torch.testing.assert_close(kl_dims.sum(1), model.training_loss(x, noise=noise)[1].kl)
    floor = float(kl_dims[:, 0].mean() + kl_dims[:, 0].min()) / 2  # dimension 0: above on average only
    assert kl_dims[:, 0].mean() > floor > kl_dims[:, 0].min()
    assert kl_dims[:, 1].mean() > floor > kl_dims[:, 2:].mean(0).max()
    below = torch.tensor([False, False, True, True])

    reconstruction_only = logvar_grad(model, -model.training_loss(x, noise=noise)[1].reconstruction)
    free = logvar_grad(model, model.training_loss(x, free_bits=floor, noise=noise)[0])
    plain = logvar_grad(model, model.training_loss(x, noise=noise)[0])
    torch.testing.assert_close(free[below], reconstruction_only[below])  # the KL pulls no more
    torch.testing.assert_close(free[~below], plain[~below])  # above the floor: the full KL
    assert not torch.allclose(plain[below], reconstruction_only[below], rtol=0, atol=1e-4)  # which did pull
    # with every dimension under a large floor, the loss is reconstruction plus a constant
    everything = logvar_grad(model, model.training_loss(x, free_bits=100.0, noise=noise)[0])
    torch.testing.assert_close(everything, reconstruction_only)


# -- 5. learning-rate schedules ---------------------------------------------------------------

def test_lr_warmup_is_linear():
    f = lr_factor(config(lr_warmup_steps=10), N_BATCHES)
    assert [f(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f(9) == f(10) == f(1000) == 1.0


def test_lr_cosine_decays_to_zero_at_the_last_step():
    total = 3 * N_BATCHES
    f = lr_factor(config(epochs=3, lr_schedule="cosine"), N_BATCHES)
    values = [f(s) for s in range(total + 1)]
    assert values[0] == 1.0
    assert values == pytest.approx([0.5 * (1 + math.cos(math.pi * s / total)) for s in range(total + 1)])
    assert values[total] == pytest.approx(0, abs=1e-12)  # the lr after the last step
    assert values[total - 1] < 0.01  # the last step's own
    assert all(a > b for a, b in zip(values, values[1:]))


def test_lr_step_multiplies_by_gamma_every_lr_step_epochs():
    f = lr_factor(config(epochs=9, lr_schedule="step", lr_step_epochs=2, lr_gamma=0.5), N_BATCHES)
    every = 2 * N_BATCHES
    assert [f(s) for s in (0, every - 1, every, 2 * every - 1, 2 * every, 3 * every)] == \
        pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.125])


def test_unknown_lr_schedule_is_refused():
    with pytest.raises(VaekitError, match="--lr-schedule linear"):
        lr_factor(config(lr_schedule="linear"), N_BATCHES)


def test_metrics_lr_follows_the_schedule(scheduled_run):
    cfg, got = SCHEDULED, scheduled_run
    f = lr_factor(cfg, N_BATCHES)
    assert [float(r["lr"]) for r in got] == pytest.approx([0.01 * f(int(r["step"])) for r in got], abs=1e-6)
    assert float(got[0]["lr"]) == pytest.approx(0.01 * (N_BATCHES + 1) / 15, abs=1e-6)  # warming up
    assert float(got[-1]["lr"]) == 0  # cosine's end


# -- 6. early stopping ------------------------------------------------------------------------

@pytest.mark.parametrize("kl_warmup_steps, epochs_run", [(0, 2), (1000, 3)], ids=["stops", "warming-up"])
def test_early_stopping_waits_for_the_kl_warmup(tmp_path, kl_warmup_steps, epochs_run):
    """lr 1e-12 leaves the weights as they were, so the validation figure cannot improve after
    epoch 1: patience 1 stops after epoch 2, unless the KL weight is still warming up."""
    run = tmp_path / "run"
    train(MODEL, config(epochs=3, lr=1e-12, patience=1, kl_warmup_steps=kl_warmup_steps), run, progress=False)
    assert [int(r["epoch"]) for r in rows(run)] == list(range(1, epochs_run + 1))
    saved = ckpt.load_checkpoint(run / ckpt.LAST).progress
    assert (saved.epoch, saved.best_epoch) == (epochs_run, 1)


# -- 7. DistributedDataParallel ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_train_as_one(tmp_path):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    options = ("--data", "digits", "--epochs", "2", "--batch-size", "64", *CLI_MODEL)
    work = tmp_path / "work"
    work.mkdir()
    run = work / "run"
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
              "--master-port", str(free_port()), "-m", "vaekit", "train", *options, "--run-dir", str(run)]
    done = subprocess.run(launch, cwd=work, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run directory:") == 1, done.stdout
    assert sorted(p.name for p in work.iterdir()) == ["run"]  # rank 1 made no directory of its own
    assert [p.relative_to(work) for p in work.rglob(runs.METRICS)] == [Path("run", runs.METRICS)]
    assert [r["epoch"] for r in rows(run)] == ["1", "2"]

    single = tmp_path / "single"
    train(MODEL, config(epochs=2, batch_size=64), single, progress=False)
    want, got = weights(single), weights(run)
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-5, msg=k)
    for a, b in zip(rows(run), rows(single)):  # the metrics are the global batch's
        assert float(a["train_elbo"]) == pytest.approx(float(b["train_elbo"]), abs=1e-4)


DDP_NAN_WORKER = """
import torch
from vaekit import VAE, ModelConfig, TrainConfig, fit
from vaekit.training.distributed import world_from_env
from cli_helpers import poison_once
torch.manual_seed(0)
x = torch.rand(512, 1, 8, 8, generator=torch.Generator().manual_seed(0))
model = VAE(ModelConfig(hidden=(32,), latent_dim=4, likelihood="bernoulli", data_shape=(1, 8, 8)))
rank = world_from_env().rank
hook = poison_once(5) if rank == 1 else (lambda step, batch: batch)  # rank 1 alone goes bad
rows = fit(model, x, None, TrainConfig(epochs=2, batch_size=64, on_nan="skip", device="cpu"), batch_hook=hook,
           progress=False)
print(f"rank {rank}: skipped {[r['nan_skipped'] for r in rows]}, steps {[r['step'] for r in rows]}", flush=True)
import os
os._exit(0)  # past the interpreter's finalization, where gloo's threads abort a process now and then (pytorch#179291)
"""


def test_a_nan_on_one_process_alone_is_skipped_by_every_process(tmp_path):
    """Both processes skip the step together and go on; before, the process with the bad loss
    skipped its backward pass and the other one waited on a gradient all-reduce that never came."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    (tmp_path / "worker.py").write_text(DDP_NAN_WORKER)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
              "--master-port", str(free_port()), str(tmp_path / "worker.py")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run(launch, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):  # 8 batches an epoch, one skipped in the first
        assert f"rank {rank}: skipped [1, 1], steps [7, 15]" in done.stdout, done.stdout


# -- 8. checkpoints that are refused ----------------------------------------------------------

@pytest.fixture(scope="module")
def foreign_checkpoint(tmp_path_factory) -> Path:
    """The last checkpoint of a run with another latent size (3, not 4)."""
    run = tmp_path_factory.mktemp("other") / "run"
    train(ModelConfig(latent_dim=3, hidden=(32,), likelihood="bernoulli"), config(epochs=1), run, progress=False)
    return run / ckpt.LAST


def copy_of(reference, tmp_path) -> Path:
    run = tmp_path / "copy"
    shutil.copytree(reference["run"], run)
    return run


def test_truncated_checkpoint_is_refused_in_one_line(capsys, tmp_path, reference):
    run = copy_of(reference, tmp_path)
    last = run / ckpt.LAST
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = (run / runs.METRICS).read_bytes(), (run / runs.CONFIG).read_bytes()
    with pytest.raises(VaekitError, match="truncated or corrupt") as e:
        resume(run, progress=False)
    assert str(last) in str(e.value) and "\n" not in str(e.value)
    code = main(["train", "--resume", str(run)])
    refused_in_one_line(code, *capsys.readouterr(), str(last), "truncated or corrupt")
    assert ((run / runs.METRICS).read_bytes(), (run / runs.CONFIG).read_bytes()) == before


def test_checkpoint_of_another_model_is_refused_in_one_line(capsys, tmp_path, reference, foreign_checkpoint):
    run = copy_of(reference, tmp_path)
    shutil.copyfile(foreign_checkpoint, run / ckpt.LAST)
    with pytest.raises(VaekitError, match="another model") as e:
        resume(run, progress=False)
    assert str(run / ckpt.LAST) in str(e.value) and "\n" not in str(e.value)
    code = main(["train", "--resume", str(run)])
    refused_in_one_line(code, *capsys.readouterr(), str(run / ckpt.LAST), "another model")


def test_refused_checkpoint_leaves_the_run_as_it_was(tmp_path, reference, foreign_checkpoint):
    run = copy_of(reference, tmp_path)
    shutil.copyfile(foreign_checkpoint, run / ckpt.LAST)
    before = (run / runs.METRICS).read_bytes()
    with pytest.raises(VaekitError, match="another model"):
        resume(run, progress=False)
    assert (run / runs.METRICS).read_bytes() == before


# -- 9. TensorBoard ---------------------------------------------------------------------------

def test_tensorboard_events_hold_the_metrics(tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as e:
        pytest.skip(f"tensorboard is not installed ({e})")
    run = tmp_path / "run"
    train(MODEL, config(epochs=1, tensorboard=True), run, progress=False)
    (events,) = (run / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("train/elbo", "train/reconstruction", "train/kl", "val/elbo", "val/reconstruction", "val/kl",
                "beta", "lr", "nan_skipped", "seconds"):
        assert tag in scalars, sorted(scalars)
    (row,) = rows(run)
    (event,) = acc.Scalars("train/elbo")
    assert event.step == N_BATCHES
    assert event.value == pytest.approx(float(row["train_elbo"]), abs=1e-4)
    assert {"reconstructions", "samples"} <= set(acc.Tags()["images"])
