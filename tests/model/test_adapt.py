"""Self-supervised adaptation: seeded, recorded in the card, lowers its loss, loads and enhances; errors named."""

import hashlib
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xrfsr_dask import nmc_particle, save, simulate_scan
from xrfsr_dask.cli import app
from xrfsr_dask.enhance import enhance
from xrfsr_dask.errors import MissingMetadataError
from xrfsr_dask.model import build_rdn, load_model, save_model
from xrfsr_dask.model.adapt import adapt

runner = CliRunner()
FAST = {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "patch": 12, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def lr():
    """A fly-scanned LR map pair (Ni, Mo), 50 x 50 pixels at a 20 nm step with a 30 nm probe."""
    hr = nmc_particle((200, 200), pixel_nm=5.0, seed=3, elements=["Ni_K", "Mo_L"], grain_nm=120.0)
    return simulate_scan(hr, step_nm=20.0, probe=30.0, scan_mode="fly", noise=True, scale=0.2, seed=1).compute()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny network saved like a bundled model: path and network."""
    torch.manual_seed(0)
    net = build_rdn("tiny")
    path = save_model(net, tmp_path_factory.mktemp("base") / "tiny-base")
    return path, load_model(path)


@pytest.fixture(scope="module")
def store(lr, tmp_path_factory):
    url = str(tmp_path_factory.mktemp("data") / "lr.zarr")
    save(lr, url, progress=False)
    return url


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_the_same_seed_gives_the_same_weights_and_the_base_is_untouched(lr, base):
    path, net = base
    original = _state(net)
    first, second = (adapt(net, lr, seed=4, **FAST) for _ in range(2))
    other = adapt(net, lr, seed=5, **FAST)
    for key, value in _state(first).items():
        torch.testing.assert_close(second.state_dict()[key], value, rtol=0, atol=0)
    assert any(not torch.equal(other.state_dict()[k], v) for k, v in _state(first).items())
    assert all(torch.equal(net.state_dict()[k], v) for k, v in original.items())
    assert first.card["adaptation"]["loss"] == second.card["adaptation"]["loss"]


def test_the_card_records_source_hash_settings_and_base_and_enhance_uses_the_model(lr, base, store, tmp_path):
    path, net = base
    out = tmp_path / "mine"
    adapted = adapt(str(path), store, out=out, **FAST)
    card = json.loads((tmp_path / "mine.json").read_text())
    record = card["adaptation"]
    assert card["name"] == "tiny-base-adapted" == adapted.card["name"]
    assert card["architecture"] == net.card["architecture"] and card["normalisation"] == net.card["normalisation"]
    assert "metrics" not in card
    data = record["data"]
    assert data["source"] == store and data["dims"] == ["element", "y", "x"] and data["shape"] == [2, 50, 50]
    assert data["elements"] == ["Ni_K", "Mo_L"]
    assert data["sha256"] == hashlib.sha256(np.asarray(lr.values, "<f8").tobytes()).hexdigest()
    assert adapt(net, lr, **FAST).card["adaptation"]["data"]["sha256"] == data["sha256"]
    scan = record["scan"]
    assert scan["probe"]["fwhm_nm"] == [30.0, 30.0] and scan["probe"]["from"] == "attrs['probe_fwhm_nm']"
    assert scan["step_nm"] == [20.0, 20.0] and scan["pair_step_nm"] == [40.0, 40.0]
    assert scan["scan_mode"] == "fly" and scan["fast_axis"] == "x" and scan["training_maps"] == 2 * 4
    settings = record["settings"]
    assert {k: settings[k] for k in ("epochs", "steps_per_epoch", "batch_size", "patch", "seed")} == {
        "epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "patch": 12, "seed": 0}
    assert record["base_model"]["name"] == "tiny-base"
    assert record["base_model"]["weights_sha256"] == net.card["weights_sha256"] != card["weights_sha256"]
    assert record["seconds"] > 0 and {"before", "after", "bicubic"} <= set(record["loss"])

    loaded = load_model(tmp_path / "mine.safetensors")
    assert loaded.card == card
    for key, value in adapted.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    result = enhance(lr, model=str(tmp_path / "mine.safetensors"), device="cpu")
    assert result.shape == (2, 100, 100) and bool(np.isfinite(result.values).all())
    assert result.attrs["provenance"][-1]["parameters"]["weights_sha256"] == card["weights_sha256"]


def test_the_self_supervised_loss_goes_down(lr, base):
    _, net = base
    adapted = adapt(net, lr, **{**FAST, "epochs": 3, "steps_per_epoch": 8, "batch_size": 8}, learning_rate=3e-3)
    loss = adapted.card["adaptation"]["loss"]
    assert loss["after"] < 0.9 * loss["before"]
    assert len(loss["per_epoch"]) == 3


def test_a_map_without_a_probe_needs_probe(lr, base):
    _, net = base
    bare = lr.copy()
    bare.attrs = {**lr.attrs, "probe_fwhm_nm": None}
    with pytest.raises(MissingMetadataError, match=r"probe="):
        adapt(net, bare, **FAST)
    record = adapt(net, bare, probe=(34.0, 28.0), **FAST).card["adaptation"]["scan"]["probe"]
    assert record["fwhm_nm"] == [34.0, 28.0] and record["from"] == "probe="


def test_a_map_too_small_for_one_patch_at_twice_the_step_is_refused(lr, base):
    _, net = base
    with pytest.raises(ValueError, match=r"22 x 22 pixels.*11 x 11 pixels.*patch=12.*smaller patch="):
        adapt(net, lr.isel(y=slice(0, 22), x=slice(0, 22)), **FAST)
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        adapt(net, lr, **FAST, learning_rate=0.0)


def test_cli_round_trip(lr, base, store, tmp_path):
    path, _ = base
    out = tmp_path / "cli-model"
    args = ["adapt", store, str(out), "--model", str(path), "--epochs", "1", "--steps-per-epoch", "2",
            "--batch-size", "4", "--patch", "12", "--device", "cpu", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tiny-base-adapted (from tiny-base): self-supervised L1" in result.output
    assert f"model: {out}.safetensors" in result.output
    card = load_model(f"{out}.safetensors").card
    assert card["adaptation"]["data"]["source"] == store and card["adaptation"]["settings"]["epochs"] == 1
    result = runner.invoke(app, [*args, "--probe-fwhm", "34,28"])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "overwrite" in result.output
    result = runner.invoke(app, [*args, "--probe-fwhm", "34,28", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert load_model(f"{out}.safetensors").card["adaptation"]["scan"]["probe"]["fwhm_nm"] == [34.0, 28.0]
