"""Training an RDN on simulated scans: L1 loss, Adam, cosine schedule, checkpoints, resume.

One training run lives in one folder:

- ``settings.json``: everything that decides the result (architecture,
  optimiser, data settings, seed) except user images passed to
  :func:`train`, which the caller must pass again; a resumed run must
  match it;
- ``checkpoint.pt``: network, optimiser and schedule after the last finished
  epoch, replaced atomically at the end of every epoch;
- ``log.csv``: ``epoch,train,validation,test,learning_rate,seconds`` — the
  mean L1 loss (normalised counts) of each split per epoch, which
  :func:`~xrfsr_dask.plot.plot_loss_curves` draws;
- ``NAME.safetensors`` and ``NAME.json``: the trained model and its card,
  written when the last epoch ends.

Runs are seeded: the data of epoch ``e`` come from a generator seeded by
``(seed, e)``, so a run interrupted and resumed from its checkpoint gives
the same weights as one that was never interrupted (on the same device).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import xarray as xr
from torch.nn import functional

from xrfsr_dask import _progress
from xrfsr_dask.errors import StoreExistsError, StoreMismatchError
from xrfsr_dask.families import HELD_OUT
from xrfsr_dask.model.data import DataSettings, PairSource
from xrfsr_dask.model.infer import resolve_device
from xrfsr_dask.model.rdn import PRESETS, RDN, build_rdn, upsample_bicubic
from xrfsr_dask.model.weights import load_model, model_serves, save_model

__all__ = ["TrainSettings", "evaluate", "fixed_pairs", "train"]

VALIDATION_DRAW = 1
TEST_DRAW = 2
"""Seeds of the fixed validation and test draws (independent of the training seed)."""
LOG_COLUMNS = ("epoch", "train", "validation", "test", "learning_rate", "seconds")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run's result; written to ``settings.json``.

    Attributes
    ----------
    preset
        Architecture name in :data:`~xrfsr_dask.model.PRESETS`.
    epochs, steps_per_epoch, batch_size
        Length of the run: ``epochs x steps_per_epoch`` Adam steps on
        batches of ``batch_size`` patches.
    learning_rate, final_learning_rate
        Adam's step size, annealed on a cosine from the first to the second
        over the whole run.
    seed
        Seeds the initial weights and every epoch's data.
    data
        The simulated data (:class:`~xrfsr_dask.model.data.DataSettings`),
        whose ``scale`` is the model's.
    """

    preset: str = "small"
    epochs: int = 40
    steps_per_epoch: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    final_learning_rate: float = 1e-5
    seed: int = 0
    data: DataSettings = DataSettings()

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}.")
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)!r}.")
        if not 0 < self.final_learning_rate <= self.learning_rate:
            raise ValueError(
                f"learning rates must satisfy 0 < final_learning_rate <= learning_rate; got "
                f"{self.final_learning_rate} and {self.learning_rate}."
            )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "data": self.data.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        return cls(**{**values, "data": DataSettings.from_dict(values["data"])})

    def command(self, out: str | os.PathLike) -> str:
        """The command that repeats this run.

        The ``xrfsr train`` command line when every setting is one the CLI
        has; otherwise the Python call that reads the settings back from
        the card (``training.settings``), which holds all of them.
        """
        d = self.data
        cli_data = DataSettings(scale=d.scale, train_seeds=d.train_seeds, validation_seeds=d.validation_seeds,
                                test_seeds=d.test_seeds, patch=d.patch, sample=d.sample, families=d.families)
        if d != cli_data or self.final_learning_rate != TrainSettings.final_learning_rate:
            return (f"xrfsr_dask.model.train({os.fspath(out)!r}, "
                    "TrainSettings.from_dict(card['training']['settings']))")
        words = [f"xrfsr train {os.fspath(out)} --preset {self.preset} --scale {d.scale}",
                 f"--epochs {self.epochs} --steps-per-epoch {self.steps_per_epoch}",
                 f"--batch-size {self.batch_size} --learning-rate {self.learning_rate!r} --seed {self.seed}"]
        default = DataSettings()
        for flag, attr in (("--train-phantoms", "train_seeds"), ("--validation-phantoms", "validation_seeds"),
                           ("--test-phantoms", "test_seeds"), ("--patch", "patch"), ("--sample", "sample")):
            if getattr(d, attr) != getattr(default, attr):
                words.append(f"{flag} {getattr(d, attr)}")
        if d.families != default.families:
            words.append("--families " + ",".join(f"{name}={weight:g}" for name, weight in d.families))
        return " ".join(words)


def fixed_pairs(data: DataSettings, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The fixed validation or test pairs of these data settings (normalised)."""
    count = data.test_patches if split == "test" else data.validation_patches
    draw = TEST_DRAW if split == "test" else VALIDATION_DRAW
    return PairSource(data, split).fixed(count, draw)


def evaluate(model: RDN, pairs: tuple[np.ndarray, np.ndarray], *, device: str = "cpu",
             batch_size: int = 16) -> dict[str, float]:
    """Mean L1 loss and PSNR (dB, normalised data range 1) of a network on fixed pairs.

    ``bicubic_psnr_db`` is the same figure for bicubic upsampling of the LR
    patches, the floor a network must beat.
    """
    dev = resolve_device(device)
    lr, truth = pairs
    model = model.to(dev).eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(lr), batch_size):
            outputs.append(model(torch.from_numpy(lr[start:start + batch_size]).to(dev)).float().cpu())
    out = torch.cat(outputs).numpy()
    bicubic = upsample_bicubic(torch.from_numpy(lr), model.config.scale).numpy()
    return {
        "l1": float(np.abs(out - truth).mean()),
        "psnr_db": float(-10 * np.log10(np.mean((out - truth) ** 2))),
        "bicubic_psnr_db": float(-10 * np.log10(np.mean((bicubic - truth) ** 2))),
    }


def _prepare_folder(out: Path, settings: TrainSettings, resume: bool) -> None:
    path = out / "settings.json"
    if not path.exists():
        if out.exists() and any(out.iterdir()):
            raise StoreExistsError(f"{out} exists and is not a training folder; choose an empty or new folder.")
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings.to_dict(), indent=2) + "\n")
        return
    if not resume:
        raise StoreExistsError(f"{out} holds a training run; pass resume=True (--resume) to continue it.")
    old = json.loads(path.read_text())
    new = json.loads(json.dumps(settings.to_dict()))
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        details = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in differ)
        raise StoreMismatchError(
            f"{out} holds a run with other settings ({details}); resume with the same settings "
            "or train into another folder."
        )


def _read_log(path: Path, upto: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open() as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) <= upto]


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def train(
    out: str | os.PathLike,
    settings: TrainSettings | None = None,
    *,
    name: str | None = None,
    images: Sequence[xr.DataArray] = (),
    resume: bool = True,
    device: str = "auto",
    progress: bool = True,
) -> RDN:
    """Train an RDN on simulated scans; checkpoint every epoch; resume by default.

    Parameters
    ----------
    out
        The run's folder (created; see the module docstring for its files).
    settings
        The run; by default :class:`TrainSettings` ``()`` (the small preset,
        scale 2).
    name
        Name of the final model files; default ``rdn-PRESET-xSCALE``.
    images
        Extra HR training maps (``(element, y, x)`` DataArrays with pixel
        ``settings.data.hr_pixel_nm``), drawn beside the phantoms.
    resume
        Continue a run found in ``out`` (its settings must match); a
        finished run is loaded and returned.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``. On CUDA the forward pass
        runs under bf16 autocast with channels-last tensors.
    progress
        Show a progress bar with the losses.

    Returns
    -------
    RDN
        The trained network with its card (test-set metrics included).

    Raises
    ------
    StoreExistsError
        ``out`` holds something else, or a run and ``resume=False``.
    StoreMismatchError
        ``out`` holds a run with different settings (the message lists them).
    """
    settings = settings or TrainSettings()
    out = Path(out)
    name = name or f"rdn-{settings.preset}-x{settings.data.scale}"
    _prepare_folder(out, settings, resume)
    final = out / f"{name}.safetensors"
    if final.exists():
        return load_model(final)
    dev = resolve_device(device)
    torch.manual_seed(settings.seed)
    model = build_rdn(cast(Any, settings.preset), scale=settings.data.scale).to(dev)  # the name is checked there
    cuda = dev.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    total = settings.epochs * settings.steps_per_epoch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total,
                                                          eta_min=settings.final_learning_rate)
    done = 0
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        done = int(state["epoch"])
    log = _read_log(out / "log.csv", done)
    source = PairSource(settings.data, "train", images=images)
    validation, test = fixed_pairs(settings.data, "validation"), fixed_pairs(settings.data, "test")
    bar = _progress.bar(total=settings.epochs, initial=done, desc=f"training {name}", unit="epoch",
                        disable=not progress)
    for epoch in range(done + 1, settings.epochs + 1):
        started = time.perf_counter()
        rng = np.random.default_rng([settings.seed, epoch])
        model.train()
        losses = []
        for _ in range(settings.steps_per_epoch):
            lr, truth = (torch.from_numpy(a).to(dev) for a in source.batch(rng, settings.batch_size))
            if cuda:
                lr = lr.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                loss = functional.l1_loss(model(lr).float(), truth)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        row = {
            "epoch": epoch, "train": float(np.mean(losses)),
            "validation": evaluate(model, validation, device=str(dev))["l1"],
            "test": evaluate(model, test, device=str(dev))["l1"],
            "learning_rate": schedule.get_last_lr()[0], "seconds": round(time.perf_counter() - started, 2),
        }
        # The log row first: a row without its checkpoint is dropped on resume
        # (and the epoch redone), a checkpoint without its row would leave a gap.
        log.append(row)
        _write_log(out / "log.csv", log)
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                    "schedule": schedule.state_dict(), "epoch": epoch}, tmp)
        os.replace(tmp, checkpoint)
        bar.update()
        bar.set_postfix(train=f"{row['train']:.4f}", validation=f"{row['validation']:.4f}")
    bar.close()
    metrics = evaluate(model, test, device=str(dev))
    card = {
        "name": name,
        "normalisation": {"method": "quantile-scale", "quantile": settings.data.quantile},
        "training": {"command": settings.command(out), "settings": settings.to_dict(),
                     "final_epoch": settings.epochs,
                     "seconds": round(sum(float(r["seconds"]) for r in log), 1), "device": str(dev),
                     "torch_version": torch.__version__},
        "data": {"families": {name: weight for name, weight in settings.data.families},
                 "held_out": list(HELD_OUT), "sample": settings.data.sample,
                 "serves": list(model_serves({"training": {"settings": settings.to_dict()}}) or ())},
        "metrics": {"test": {k: round(v, 4) for k, v in metrics.items()},
                    "test_set": f"{settings.data.test_patches} patches from phantom seeds of the test split"},
    }
    cpu_model = model.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # as above
    save_model(cpu_model, final, card=card, overwrite=True)
    return model.eval()

