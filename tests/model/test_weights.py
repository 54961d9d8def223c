"""Weights and cards: round trips, fsspec paths, mismatches named, the bundled model."""

import json

import fsspec
import pytest
import torch

from xrfsr_dask import SourceNotFoundError, StoreExistsError
from xrfsr_dask.model import (
    CARD_FORMAT,
    DEFAULT_MODEL,
    DataSettings,
    ModelCardError,
    build_rdn,
    bundled_models,
    evaluate,
    fixed_pairs,
    load_model,
    save_model,
)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(5)
    net = build_rdn("tiny", scale=3)
    path = save_model(net, tmp_path / "m", card={"metrics": {"test": {"psnr_db": 1.0}}})
    return net, path


def test_round_trip_gives_the_same_network_and_card(saved):
    net, path = saved
    loaded = load_model(path)
    x = torch.rand(2, 1, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["format"] == CARD_FORMAT and card["name"] == "m"
    assert card["architecture"]["scale"] == 3 and card["parameters"] == net.n_parameters
    assert card["metrics"]["test"]["psnr_db"] == 1.0 and loaded.card == card
    assert not loaded.training


def test_load_from_an_fsspec_url(saved):
    net, path = saved
    for suffix in (".safetensors", ".json"):
        with fsspec.open(f"memory://models/m{suffix}", "wb") as f:
            f.write(path.with_suffix(suffix).read_bytes())
    loaded = load_model("memory://models/m.safetensors")
    assert loaded.config == net.config


def test_existing_files_are_not_overwritten(saved):
    net, path = saved
    with pytest.raises(StoreExistsError, match="overwrite=True"):
        save_model(net, path)


def test_mismatches_are_named(saved, tmp_path):
    _, path = saved
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "architecture": {**card["architecture"], "growth": 9}}))
    with pytest.raises(ModelCardError, match=r"do not fit the architecture.*shapes differ"):
        load_model(path)
    card_path.write_text(json.dumps({**card, "architecture": {**card["architecture"], "blocks": 3}}))
    with pytest.raises(ModelCardError, match=r"missing \['blocks.2"):
        load_model(path)
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="does not match its card: sha256"):
        load_model(path)
    card_path.write_text("{not json")
    with pytest.raises(ModelCardError, match="not valid JSON"):
        load_model(path)
    with pytest.raises(SourceNotFoundError, match="neither a bundled model"):
        load_model(tmp_path / "nothing.safetensors")


def test_bundled_model_reproduces_its_card_on_the_test_set():
    assert DEFAULT_MODEL in bundled_models()
    net = load_model()
    card = net.card
    assert card["name"] == DEFAULT_MODEL and net.config.scale == 2
    assert card["training"]["command"].startswith("xrfsr train ")
    data = DataSettings.from_dict(card["training"]["settings"]["data"])
    measured = evaluate(net, fixed_pairs(data))
    for key in ("psnr_db", "bicubic_psnr_db"):
        assert measured[key] == pytest.approx(card["metrics"]["test"][key], abs=0.01)
    assert measured["psnr_db"] > measured["bicubic_psnr_db"] + 1.0
    size = sum(p.stat().st_size for p in _bundled_files())
    assert size < 2_000_000


def _bundled_files():
    import importlib.resources

    folder = importlib.resources.files("xrfsr_dask.model") / "bundled"
    return [p for p in folder.iterdir() if p.name.startswith(DEFAULT_MODEL)]


def test_saving_a_loaded_model_under_a_new_name_renames_it(tmp_path):
    net = load_model()
    path = save_model(net, tmp_path / "rdn-v1.2")
    assert path.name == "rdn-v1.2.safetensors"
    again = load_model(tmp_path / "rdn-v1.2")
    assert again.card["name"] == "rdn-v1.2" and again.card["metrics"] == net.card["metrics"]


def test_unreadable_weights_and_bad_normalisation_are_card_errors(saved):
    _, path = saved
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "normalisation": {"method": "quantile-scale", "quantile": 99.9}}))
    with pytest.raises(ModelCardError, match="0 < q <= 1; got"):
        load_model(path)
    card_path.write_text(json.dumps({k: v for k, v in card.items() if k != "weights_sha256"}))
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelCardError, match="not a readable safetensors file"):
        load_model(path)
