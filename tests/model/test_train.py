"""Training: the loss falls, an interrupted run resumes to identical weights, folders are guarded."""

import csv

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xrfsr_dask import StoreExistsError, StoreMismatchError
from xrfsr_dask.cli import app
from xrfsr_dask.model import DataSettings, PairSource, TrainSettings, build_rdn, evaluate, fixed_pairs, train
from xrfsr_dask.plot import plot_loss_curves

DATA = DataSettings(phantom_shape=(160, 160), steps_nm=(20.0, 40.0), patch=8, train_seeds=2,
                    validation_seeds=1, test_seeds=1, validation_patches=16, test_patches=16)
RUN = TrainSettings(preset="tiny", epochs=3, steps_per_epoch=6, batch_size=8, learning_rate=3e-3, data=DATA)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, train(out, RUN, progress=False, device="cpu")


def test_training_lowers_the_validation_loss(finished):
    out, model = finished
    torch.manual_seed(RUN.seed)
    untrained = build_rdn("tiny", scale=2)
    pairs = fixed_pairs(DATA, "validation")
    assert evaluate(model, pairs)["l1"] < 0.9 * evaluate(untrained, pairs)["l1"]
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates == sorted(rates, reverse=True) and rates[-1] == pytest.approx(RUN.final_learning_rate)
    fig = plot_loss_curves(out / "log.csv")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["train", "validation", "test"]
    card = model.card
    assert card["training"]["settings"]["epochs"] == 3 and card["metrics"]["test"]["l1"] > 0


def test_an_interrupted_run_resumes_to_the_same_weights(finished, tmp_path, monkeypatch):
    _, reference = finished
    calls = {"n": 0}
    original = PairSource.batch

    def flaky(self, rng, size, **kw):
        calls["n"] += 1
        if calls["n"] == RUN.steps_per_epoch * 2 + 3:
            raise KeyboardInterrupt
        return original(self, rng, size, **kw)

    monkeypatch.setattr(PairSource, "batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, RUN, progress=False, device="cpu")
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert not (tmp_path / "rdn-tiny-x2.safetensors").exists()
    monkeypatch.setattr(PairSource, "batch", original)
    resumed = train(tmp_path, RUN, progress=False, device="cpu")
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with open(tmp_path / "log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_folders_are_guarded(finished, tmp_path):
    out, _ = finished
    with pytest.raises(StoreMismatchError, match=r"epochs: 3 there, 4 now"):
        train(out, TrainSettings(**{**RUN.__dict__, "epochs": 4}), progress=False)
    with pytest.raises(StoreExistsError, match="pass resume=True"):
        train(out, RUN, resume=False, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreExistsError, match="not a training folder"):
        train(tmp_path, RUN, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_settings_are_validated():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        TrainSettings(preset="huge")
    with pytest.raises(ValueError, match="final_learning_rate <= learning_rate"):
        TrainSettings(learning_rate=1e-5, final_learning_rate=1e-3)


def test_cli_trains_and_reports(tmp_path):
    out = tmp_path / "cli-run"
    result = CliRunner().invoke(app, [
        "train", str(out), "--preset", "tiny", "--epochs", "1", "--steps-per-epoch", "1",
        "--batch-size", "2", "--train-phantoms", "1", "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    assert "test PSNR" in result.output and (out / "rdn-tiny-x2.safetensors").exists()
    bad = CliRunner().invoke(app, ["train", str(tmp_path / "x"), "--preset", "huge"])
    assert bad.exit_code == 2 and "unknown preset 'huge'" in bad.output


@pytest.mark.gpu
def test_training_on_the_gpu_uses_bf16_and_gives_a_loadable_model(tmp_path):
    run = TrainSettings(**{**RUN.__dict__, "epochs": 1})
    model = train(tmp_path, run, progress=False, device="cuda")
    assert model.card["training"]["device"].startswith("cuda")
    assert np.isfinite(model.card["metrics"]["test"]["l1"])


def test_the_command_of_a_family_mix_is_a_cli_line_the_cli_accepts(tmp_path):
    data = DataSettings(sample="mixed", train_seeds=3, families=(("nmc", 3.0), ("cell", 1.0)))
    command = TrainSettings(epochs=2, data=data).command("runs/x")
    assert command.startswith("xrfsr train runs/x ") and "--sample mixed" in command
    assert "--families nmc=3,cell=1" in command and "--train-phantoms 3" in command
    # The CLI parses the same flags into the same settings (refusing what DataSettings refuses).
    bad = CliRunner().invoke(app, ["train", str(tmp_path / "run"), "--families", "nmc=3,rocks=1"])
    assert bad.exit_code == 2 and "families must name some of" in bad.output
    held = CliRunner().invoke(app, ["train", str(tmp_path / "run"), "--families", "circuit"])
    assert held.exit_code == 2 and "held out" in held.output
