"""The end-to-end demo on generated data: the paper's experiment, small enough for a laptop.

For each optic of Wu et al. (2023) — a Fresnel zone plate (FZP: probe
61.6 nm, 50 nm steps) and multilayer Laue lenses (MLL: probe 24.7 nm, 30 nm
steps) — the demo

1. makes a ground-truth NMC particle volume (Ni, Co, Mn, Mo) on a grid four
   times finer than the scan step, in a slab at least as tall as the model's
   receptive field (so every projection is at least as large as what one
   output pixel of the network sees), and stores it;
2. records two independent fly-scanned XRF tomography series of it (angles
   interleaved, independent stage drift, position jitter and Poisson
   noise), and stores them as zarr v3;
3. fits the probe from a simulated probe image (a scan across a point-like
   particle, with counting noise);
4. enhances every projection of both series chunk by chunk with the bundled
   RDN (``rdn-small-x2``) on a local dask cluster;
5. checks the enhanced projections of dataset a against the measured ones
   (Poisson deviance, count ratios: :func:`xrfsr_dask.consistency.consistency`),
   refines them (:func:`xrfsr_dask.consistency.refine`, what
   ``enhance(..., refine=N)`` runs after the network) and checks them again,
   and measures the bright rim the network puts at the particle's edge
   against the ground truth;
6. aligns each LR series by projection matching, applies the same nm shifts
   to its enhanced version, and reconstructs LR and HR volumes (FBP);
7. measures FSC between the two datasets (half-bit and one-bit), FSC against
   the ground truth (threshold 0.5), PSD, PSNR between the two datasets, and
   the combined resolution ``sqrt(b² + s²)``; resolutions are compared with
   the paper's as half periods ``1 / (2 f)`` at the crossing frequency ``f``
   (the paper's convention), full periods ``1 / f`` kept beside them. The FSC
   between the two *enhanced* datasets raises
   :class:`~xrfsr_dask.errors.EnhancedFSCWarning` (it measures
   reproducibility, not resolution): the demo records it and the report
   shows it;
8. writes ``report/index.html`` with one figure per supplementary figure of
   the paper and one of the consistency check (:mod:`xrfsr_dask.report`),
   and ``results.json``.

Physical units, so that LR, HR and the ground truth compare directly: the
simulated scan records at each point the counts of a ground-truth-voxel-wide
column under the probe, so counts per scan point divided by the truth
voxel's area are counts per unit area of the projection
(:data:`AREA_UNITS`, for maps and profiles of LR, HR and truth alike); a
reconstruction holds those counts per voxel length, so dividing by its own
voxel as well gives counts per unit volume (:data:`VOLUME_UNITS`), as the
ground truth's counts per voxel divided by its voxel volume do.

The ground truth is what the paper could not have: it says what resolution
the synthetic data actually allow, beside what the FSC between two datasets
claims.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import dask
import numpy as np
import xarray as xr
from scipy import ndimage

from xrfsr_dask import _progress
from xrfsr_dask._demo_records import TRUTH_PER_STEP, DemoRun, Optic, OpticRun
from xrfsr_dask._version import __version__
from xrfsr_dask.consistency import consistency, refine
from xrfsr_dask.errors import EnhancedFSCWarning, StoreExistsError
from xrfsr_dask.io import open_xrf, save
from xrfsr_dask.metrics import fsc, psd, psnr
from xrfsr_dask.phantoms import ELEMENTS, nmc_particle, nmc_volume
from xrfsr_dask.probe import GaussianProbe, combined_resolution_nm, fit_probe
from xrfsr_dask.schema import xrf_maps
from xrfsr_dask.simulate import simulate_scan, spectrum_cube
from xrfsr_dask.tomo.projection import project

__all__ = ["AREA_UNITS", "OPTICS", "REFINE_ITERATIONS", "VOLUME_UNITS", "DemoRun", "Optic", "OpticRun", "run_demo"]

MODEL = "rdn-small-x2"
"""The bundled default for projection series, ``xrfsr_dask.model.DEFAULT_MODELS["series"]`` (trained on
maps and on projections through thick samples); named here so that importing the demo does not import torch."""
AREA_UNITS = "counts / (10 nm)²"
"""The one scale of every projection, map and profile in the report: counts per 100 nm² of projected area."""
VOLUME_UNITS = "counts / (10 nm)³"
"""The one scale of every volume in the report (slices, PSD): counts per 1000 nm³ of sample."""
REFINE_ITERATIONS: Literal["auto"] = "auto"
"""The refinement the demo shows (``enhance(..., refine="auto")``): each projection and element stops where
its deviance meets what Poisson noise alone gives (``refine_stops`` in ``results.json`` has the updates
taken). Every run also refines one projection :data:`REFINE_LADDER` times (``refine_ladder``), so the
report shows where a fixed ``N`` would have put the deviance."""
REFINE_LADDER = (0, 1, 2, 5, 10, 20, 40)
"""Refinement iterations tried on the projection shown, to show where the deviance settles."""
CHECK_PROJECTIONS = 16
"""Projections of dataset a, evenly spread over the angles, that the consistency check compares."""
PROFILE_ELEMENT = "Ni_K"
"""The element of the consistency maps, the edge profile and the table's deviance and count ratios."""
PROFILE_ROWS = 5
"""LR rows, centred on the particle, averaged into the edge profile (the edge is straight over them)."""


OPTICS = (
    Optic(
        "FZP", "Fresnel zone plate", probe_nm=61.6, step_nm=50.0, threshold="half-bit",
        paper={"probe_nm": 61.6, "lr_half_period_nm": 72.0, "hr_half_period_nm": 22.0,
               "combined_half_period_nm": 94.8, "psnr_lr_db": 41.6, "psnr_hr_db": 32.7},
    ),
    Optic(
        "MLL", "multilayer Laue lenses", probe_nm=24.7, step_nm=30.0, threshold="one-bit",
        paper={"probe_nm": 24.7, "lr_half_period_nm": 51.8, "hr_half_period_nm": 24.5,
               "combined_half_period_nm": 57.4, "psnr_lr_db": 41.3, "psnr_hr_db": 20.6},
    ),
)
"""The paper's two optics with the scan step the demo pairs with each, and the paper's numbers for them."""


class _Stages:
    """Numbered progress lines with elapsed time; the seconds of each stage are kept."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.seconds: dict[str, float] = {}

    def run(self, label: str, func: Callable[[], Any]) -> Any:
        self.done += 1
        print(f"[{self.done}/{self.total} · {time.perf_counter() - self.start:5.1f} s] {label}", flush=True)
        began = time.perf_counter()
        result = func()
        self.seconds[label] = round(time.perf_counter() - began, 2)
        return result


def _drift_px(rng: np.random.Generator, angles: np.ndarray, rms_px: float) -> np.ndarray:
    """Stage drift ``(angle, [dy, dx])`` in pixels: a smooth random walk plus jitter.

    The ``y`` mean and the ``a cos θ + b sin θ`` part of ``x`` are removed: they
    only move the whole sample, which no alignment can (or should) undo, and
    leaving them out keeps the reconstructions on the ground truth's grid.
    """
    walk = np.cumsum(rng.normal(size=(angles.size, 2)), axis=0)
    drift = walk + 0.5 * rng.normal(size=walk.shape)
    drift[:, 0] -= drift[:, 0].mean()
    radians = np.deg2rad(angles)
    design = np.stack([np.cos(radians), np.sin(radians), np.ones_like(radians)], axis=1)
    drift[:, 1] -= design @ np.linalg.lstsq(design, drift[:, 1], rcond=None)[0]
    return drift * (rms_px / np.sqrt((drift**2).mean()))


def _drifted(series: xr.DataArray, drift_px: np.ndarray) -> xr.DataArray:
    values = np.asarray(series.values)
    moved = np.empty_like(values)
    for a in range(values.shape[1]):
        for e in range(values.shape[0]):
            moved[e, a] = ndimage.shift(values[e, a], drift_px[a], order=3, mode="nearest")
    return series.copy(data=np.clip(moved, 0, None))


def _probe_measurement(optic: Optic, seed: int) -> xr.DataArray:
    """A probe image as a beamline measures it: a fine 2-D scan over a point-like particle.

    64 x 64 points at a tenth of the FWHM, peak 400 counts over a background
    of 4 counts, Poisson noise; the probe is the one the scans are simulated with.
    """
    pixel = optic.probe_nm / 10
    axis = (np.arange(64) - 31.5) * pixel
    probe = optic.probe
    rng = np.random.default_rng(seed)
    expected = 400.0 * probe.image(axis, axis, center_nm=(0.3 * pixel, -0.2 * pixel)) + 4.0
    image = rng.poisson(expected).astype(np.float32)
    maps = xrf_maps(image[None], elements=["probe"], step_nm=pixel, origin_nm=float(axis[0]),
                    operation="xrfsr_dask.demo.probe_measurement",
                    parameters={"fwhm_nm": list(probe.fwhm_pair_nm), "angle_deg": probe.angle_deg, "seed": seed})
    return maps.isel(element=0, drop=True)


def _on_grid(truth: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """The ground truth averaged onto a reconstruction's voxels (which must tile it exactly)."""
    factors = {d: truth.sizes[d] // like.sizes[d] for d in ("z", "y", "x")}
    if any(truth.sizes[d] != f * like.sizes[d] for d, f in factors.items()):
        raise ValueError(f"the reconstruction grid {dict(like.sizes)} does not tile the truth {dict(truth.sizes)}.")
    coarse = truth.coarsen(factors).mean()
    for d in ("z", "y", "x"):
        offset = np.abs(coarse[d].values - like[d].values).max()
        if offset > 0.01 * float(like[d].values[1] - like[d].values[0]):
            raise ValueError(f"the reconstruction's {d} voxels sit {offset:.3g} nm off the ground truth's.")
    return coarse.assign_coords({d: like[d] for d in ("z", "y", "x")})


def _per_area(maps: xr.DataArray, optic: Optic) -> xr.DataArray:
    """Counts per scan point (LR, HR and truth projections alike) as :data:`AREA_UNITS`.

    The demo's scan records at each point the counts of a column one
    ground-truth voxel wide under the probe (:func:`~xrfsr_dask.tomo.project`
    sums voxels, :func:`~xrfsr_dask.simulate.simulate_scan` weighs them by
    the probe), so counts per scan point over the truth voxel's area are
    counts per unit projected area, whatever the grid they sit on.
    """
    out = maps * (100.0 / optic.truth_voxel_nm**2)
    out.attrs = {**maps.attrs, "units": AREA_UNITS}
    return out


def _per_volume(volume: xr.DataArray, optic: Optic, voxel_nm: float) -> xr.DataArray:
    """A reconstruction with voxels of ``voxel_nm``, or the truth (its own voxel), in :data:`VOLUME_UNITS`.

    FBP returns the projections' counts per voxel length (a sum along a ray
    gives the projection back): counts per scan point per voxel, hence the
    truth voxel's area and the reconstruction's voxel in the divisor. The
    ground truth's counts per voxel take its voxel's volume, the same formula.
    """
    out = volume * (1000.0 / (optic.truth_voxel_nm**2 * voxel_nm))
    out.attrs = {**volume.attrs, "units": VOLUME_UNITS}
    return out


def _band(maps: xr.DataArray, centre_nm: float, half_nm: float) -> xr.DataArray:
    """The mean of the rows whose centres lie within ``half_nm`` of ``centre_nm``: a profile along x."""
    rows = np.flatnonzero(np.abs(maps.y.values - centre_nm) < half_nm)
    return maps.isel(y=rows).mean("y")


def _rim_excess(truth: np.ndarray, maps: dict[str, np.ndarray],
                per_step: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mean ``(map − truth) / step height`` against the distance from the particle's outline, inward positive.

    ``truth`` and every map are ``(projection, y, x)`` on one grid with
    ``per_step`` pixels per scan step. The outline is where the truth first
    exceeds 5 % of its maximum in each projection; every pixel within
    ``−2`` to ``+4`` scan steps of it is binned by its distance (whole
    pixels: ``0`` is the first ring inside, ``−1`` the first outside), so
    the whole outline of every projection is averaged — the rim is measured
    on thousands of pixels, not on one noisy line. The step height is the
    truth's mean one to two scan steps inside.
    """
    bins = np.arange(-2 * per_step, 4 * per_step)
    sums = {name: np.zeros(bins.size) for name in maps}
    truth_sum, count = np.zeros(bins.size), np.zeros(bins.size)
    for a in range(truth.shape[0]):
        mask = truth[a] > 0.05 * np.nanmax(truth[a])
        # Signed distance from the outline (half a pixel outside the mask's edge pixels), in pixels.
        signed = np.where(mask, ndimage.distance_transform_edt(mask) - 0.5,
                          0.5 - ndimage.distance_transform_edt(~mask))
        distance = np.floor(signed)
        for i, b in enumerate(bins):
            where = distance == b
            count[i] += where.sum()
            truth_sum[i] += truth[a][where].sum()
            for name, values in maps.items():
                sums[name][i] += (values[a][where] - truth[a][where]).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        inner = (bins >= per_step) & (bins < 2 * per_step)
        height = truth_sum[inner].sum() / count[inner].sum()
        return bins, {name: total / count / height for name, total in sums.items()}


def _summary(result: xr.Dataset) -> dict[str, dict[str, float]]:
    """Per element, over the projections compared: mean deviance, its Poisson expectation, excess, count ratios."""
    names = ("mean_deviance", "expected_mean_deviance", "excess_deviance", "count_ratio", "total_count_ratio")
    return {str(e): {name: float(result[name].sel(element=e).mean()) for name in names}
            for e in result.element.values}


def _rms_error_percent(estimate: xr.DataArray, truth: xr.DataArray) -> float:
    """RMS of ``estimate − truth`` over the RMS of ``truth``, in per cent (same grid, NaN left out)."""
    a, b = np.asarray(estimate.values, np.float64), np.asarray(truth.values, np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    return float(100 * np.sqrt(np.mean((a[keep] - b[keep]) ** 2) / np.mean(b[keep] ** 2)))


def _consistency_check(optic: Optic, measured: xr.DataArray, enhanced: xr.DataArray, truth: xr.DataArray,
                       probe: GaussianProbe) -> dict[str, Any]:
    """Check, refine and check again the enhanced projections of dataset a; measure the edge overshoot.

    ``measured``, ``enhanced`` and ``truth`` are the same projections
    (computed): the LR scan, its enhancement and the drifted ground-truth
    projection the scan recorded (four times finer than the scan). The probe
    is the fitted one, as on a beamline.
    """
    element = PROFILE_ELEMENT
    refined = refine(enhanced, measured, iterations=REFINE_ITERATIONS, probe=probe)
    stops = np.asarray(refined.attrs["provenance"][-1]["parameters"]["stopped_at"][element], float)
    refined = refined.compute()
    variants = {"truth": truth, "hr": enhanced, "refined": refined}
    checks = {name: consistency(data, measured, probe=probe).compute() for name, data in variants.items()}
    ratio = TRUTH_PER_STEP // 2
    truth_hr = truth.coarsen(y=ratio, x=ratio).mean()
    truth_lr = truth.coarsen(y=TRUTH_PER_STEP, x=TRUTH_PER_STEP).mean()

    # The bright rim: excess over the truth against the distance from the outline, every projection checked.
    per_step = enhanced.sizes["x"] // measured.sizes["x"]
    fine_nm = optic.step_nm / per_step
    bins, excess = _rim_excess(truth_hr.sel(element=element).values, {
        name: data.sel(element=element).values for name, data in (("hr", enhanced), ("refined", refined))}, per_step)
    rim = (bins >= 0) & (bins < 2 * per_step)
    overshoot = {name: float(100 * np.nanmax(curve[rim])) for name, curve in excess.items()}

    # The projection shown, and where the deviance settles with more refinement.
    shown = 0
    one = {name: data.isel(angle=[shown]) for name, data in (("lr", measured), ("hr", enhanced))}
    ladder = []
    for n in REFINE_LADDER:
        candidate = refine(one["hr"], one["lr"], iterations=n, probe=probe).compute()
        result = consistency(candidate, one["lr"], probe=probe).sel(element=element).compute()
        ladder.append({"iterations": n, "mean_deviance": float(result.mean_deviance.squeeze()),
                       "expected_mean_deviance": float(result.expected_mean_deviance.squeeze()),
                       "error_vs_truth_percent": _rms_error_percent(
                           candidate.sel(element=element), truth_hr.isel(angle=[shown]).sel(element=element))})
    view = {name: _per_area(data.isel(angle=shown).sel(element=element), optic) for name, data in
            (("lr", measured), ("hr", enhanced), ("refined", refined), ("truth", truth))}
    centre = float(measured.y.values[measured.sizes["y"] // 2])
    half = PROFILE_ROWS * optic.step_nm / 2
    profiles = {name: _band(data, centre, half) for name, data in view.items()}
    t_profile = profiles["truth"].values
    edge_nm = float(profiles["truth"].x.values[np.flatnonzero(t_profile > 0.05 * np.nanmax(t_profile))[0]])
    return {
        "angle_deg": float(measured.angle.values[shown]),
        "element": element,
        "measured": view["lr"],
        "deviance": {name: checks[name].deviance.isel(angle=shown).sel(element=element) for name in checks},
        "shown": {name: {key: float(checks[name][key].isel(angle=shown).sel(element=element))
                         for key in ("mean_deviance", "expected_mean_deviance")} for name in checks},
        "profiles": profiles,
        "profile_band_nm": (centre - half, centre + half),
        "edge_nm": edge_nm,
        "rim_excess": {"distance_nm": (bins + 0.5) * fine_nm, **excess},
        "numbers": {
            "element": element,
            "projections": int(measured.sizes["angle"]),
            "angles_deg": [float(a) for a in measured.angle.values],
            "refine_iterations": REFINE_ITERATIONS,
            "refine_stops": {"min": float(stops.min()), "mean": float(stops.mean()), "max": float(stops.max()),
                             "shown": float(stops[shown])},
            "probe_fwhm_nm": list(probe.fwhm_pair_nm),
            "mean_deviance": {name: float(c.mean_deviance.sel(element=element).mean()) for name, c in checks.items()},
            "expected_mean_deviance": {name: float(c.expected_mean_deviance.sel(element=element).mean())
                                       for name, c in checks.items()},
            "count_ratio": {name: float(c.count_ratio.sel(element=element).mean()) for name, c in checks.items()},
            "total_count_ratio": {name: float(c.total_count_ratio.sel(element=element).mean())
                                  for name, c in checks.items()},
            "per_element": {name: _summary(c) for name, c in checks.items()},
            "error_vs_truth_percent": {
                "lr": _rms_error_percent(measured.sel(element=element), truth_lr.sel(element=element)),
                "hr": _rms_error_percent(enhanced.sel(element=element), truth_hr.sel(element=element)),
                "refined": _rms_error_percent(refined.sel(element=element), truth_hr.sel(element=element)),
            },
            "edge_overshoot_percent": overshoot,
            "edge_excess_percent": {"distance_nm": [float(v) for v in (bins + 0.5) * fine_nm],
                                    **{name: [float(100 * v) for v in curve] for name, curve in excess.items()}},
            "refine_ladder": ladder,
        },
    }


RESOLUTION_CONVENTION = (
    "*_half_period_nm: half period 1/(2f) at the FSC crossing frequency f, the paper's convention; "
    "*_full_period_nm: full period 1/f; combined: sqrt(b^2 + s^2) with s the LR half period"
)
"""What the resolutions in ``results.json`` mean (written there as ``resolution_convention``)."""


def _resolution(result: xr.Dataset, threshold: str | float, element: str = "Ni_K", *,
                period: str = "half") -> float:
    return float(result[f"resolution_{period}_period_nm"].sel(element=element, threshold=threshold))


def _project(truth: xr.DataArray, angles: np.ndarray) -> xr.DataArray:
    """:func:`~xrfsr_dask.tomo.project` slab by slab along the rotation axis (the same result, faster).

    Slices normal to the rotation axis project independently; slabs of
    :data:`PROJECT_SLAB` slices keep the projector's working set in cache.
    """
    starts = range(0, truth.sizes["z"], PROJECT_SLAB)
    slabs = [project(truth.isel(z=slice(z, z + PROJECT_SLAB)), angles=angles, progress=False)
             for z in _progress.bar(starts, desc=f"project {len(angles)} angles", unit="slab")]
    series = xr.concat(slabs, dim="y", combine_attrs="override")
    series.attrs["provenance"] = slabs[0].attrs["provenance"]
    return series


PROJECT_SLAB = 48
"""Slices per call of the projector in :func:`_project`."""


def _optic_run(optic: Optic, out: Path, settings: dict[str, Any], stages: _Stages, client: Any) -> OpticRun:
    from xrfsr_dask.enhance import enhance_to_zarr
    from xrfsr_dask.tomo import align, reconstruct

    size, rows, n_angles, seed = settings["size"], settings["rows"], settings["angles"], settings["seed"]
    folder = out / optic.name
    voxel = optic.truth_voxel_nm
    shape = (TRUTH_PER_STEP * rows, TRUTH_PER_STEP * size, TRUTH_PER_STEP * size)

    def make_truth() -> xr.DataArray:
        volume = nmc_volume(shape, voxel_nm=voxel, seed=seed, radius_nm=0.4 * shape[-1] * voxel,
                            grain_nm=6 * optic.step_nm, counts=settings["counts"])
        # In-memory arrays are written from this process: shipped to the cluster they would travel
        # inside the task graph (hundreds of MiB).
        with dask.config.set(scheduler="threads"):
            save(volume, str(folder / "truth.zarr"), chunks={"z": -1, "y": -1, "x": -1}, progress=False)
        return volume

    truth = stages.run(f"{optic.name}: ground-truth particle {shape} voxels of {voxel:g} nm", make_truth)

    step = 180.0 / n_angles
    angles = {"a": np.arange(n_angles) * step, "b": np.arange(n_angles) * step + step / 2}
    compared = np.unique(np.linspace(0, n_angles, CHECK_PROJECTIONS, endpoint=False).astype(int))
    seen: dict[str, xr.DataArray] = {}
    lr: dict[str, xr.DataArray] = {}
    for k, (name, theta) in enumerate(angles.items()):
        def record(name: str = name, theta: np.ndarray = theta, k: int = k) -> xr.DataArray:
            rng = np.random.default_rng([seed, k, int(optic.step_nm)])
            series = _project(truth, theta)
            series = _drifted(series, _drift_px(rng, theta, settings["drift_nm"] / voxel))
            if name == "a":  # what the scan saw, for the consistency check's ground truth
                seen[name] = series.isel(angle=compared).copy()
            scan = simulate_scan(series, step_nm=optic.step_nm, probe=optic.probe, scan_mode="fly",
                                 jitter_nm=0.05 * optic.step_nm, noise=True, seed=seed + 10 * k + 1)
            url = str(folder / f"lr_{name}.zarr")
            with dask.config.set(scheduler="threads"):  # in memory here: not shipped inside a graph
                save(scan, url, chunks={"angle": max(1, n_angles // 4), "y": -1, "x": -1}, progress=False)
            return open_xrf(url)

        lr[name] = stages.run(
            f"{optic.name}: dataset {name}, {n_angles} fly-scanned projections, probe {optic.probe_nm:g} nm, "
            f"step {optic.step_nm:g} nm -> {folder / f'lr_{name}.zarr'}", record)

    image = _probe_measurement(optic, seed)
    fit = stages.run(f"{optic.name}: fit the probe image", lambda: fit_probe(image))
    fwhm = math.sqrt(float(fit.fwhm_major_nm) * float(fit.fwhm_minor_nm))

    hr: dict[str, xr.DataArray] = {}
    for name in lr:
        def enhance_one(name: str = name) -> xr.DataArray:
            url = str(folder / f"hr_{name}.zarr")
            enhance_to_zarr(str(folder / f"lr_{name}.zarr"), url, settings["model"], progress=True)
            return open_xrf(url)

        hr[name] = stages.run(f"{optic.name}: enhance dataset {name} with {settings['model']} on the cluster "
                              f"({client.dashboard_link})", enhance_one)

    probe = GaussianProbe.from_fit(fit)

    def check_a() -> dict[str, Any]:
        # Small maps, many tiny tasks: quicker in this process than shipped to the cluster.
        with dask.config.set(scheduler="synchronous"):
            return _consistency_check(optic, lr["a"].isel(angle=compared).compute(),
                                      hr["a"].isel(angle=compared).compute(), seen.pop("a"), probe)

    check = stages.run(
        f"{optic.name}: check {compared.size} enhanced projections of dataset a against the measured counts, "
        f"refine them (refine={REFINE_ITERATIONS!r}) and check again", check_a)

    volumes: dict[str, xr.DataArray] = {}
    shifts: dict[str, float] = {}
    for name, measured in lr.items():
        def tomography(name: str = name, measured: xr.DataArray = measured) -> None:
            found = align(measured.compute(), progress=True)
            shifts[name] = float(np.sqrt((found.shift_nm.values**2).mean()))
            # Both series lazily from their stores, so the cluster's graphs carry no arrays.
            pairs = (("lr", found.apply(measured)), ("hr", found.apply(hr[name])))
            for grid, series in pairs:
                volume = reconstruct(series, algorithm="fbp").compute()
                with dask.config.set(scheduler="threads"):
                    save(volume, str(folder / f"{grid}_volume_{name}.zarr"), chunks={"z": -1, "y": -1, "x": -1},
                         progress=False)
                volumes[f"{grid}_{name}"] = volume

        stages.run(f"{optic.name}: align dataset {name}, reconstruct LR and HR volumes (FBP)", tomography)

    def measure() -> dict[str, Any]:
        on = {grid: _on_grid(truth, volumes[f"{grid}_a"]) for grid in ("lr", "hr")}
        # One physical scale for LR, HR and truth: what the slices and the PSDs show.
        dense_truth = _per_volume(truth, optic, voxel)
        densities = {grid: _per_volume(volumes[f"{grid}_a"], optic, float(volumes[f"{grid}_a"].attrs["voxel_nm"][-1]))
                     for grid in ("lr", "hr")}
        densities["truth"] = _on_grid(dense_truth, volumes["hr_a"])
        # The paper's HR figure is an FSC between two enhanced datasets, which the library warns about
        # (it measures reproducibility): run it as the paper did, and keep the warning for the report.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EnhancedFSCWarning)
            curves = {grid: fsc(volumes[f"{grid}_a"], volumes[f"{grid}_b"], thresholds=["half-bit", "one-bit"],
                                progress=False) for grid in ("lr", "hr")}
        notes = [f"{optic.name}, FSC of the HR volumes a and b: {w.message}" for w in caught
                 if issubclass(w.category, EnhancedFSCWarning)]
        for w in caught:
            if not issubclass(w.category, EnhancedFSCWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        curves |= {f"{grid}_truth": fsc(volumes[f"{grid}_a"], on[grid], thresholds=[0.5], progress=False)
                   for grid in ("lr", "hr")}
        spectra = {grid: psd(densities[grid], bins="log", progress=False) for grid in ("lr", "hr")}
        spectra["truth"] = psd(dense_truth, bins="log", progress=False)
        ratios = {
            grid: {variant: float(psnr(volumes[f"{grid}_a"], volumes[f"{grid}_b"], variant=variant)
                                  .sel(element="Ni_K"))
                   for variant in ("standard", "paper")}
            for grid in ("lr", "hr")
        }
        return {"truth": on, "fsc": curves, "psd": spectra, "psnr": ratios, "warnings": notes,
                "densities": densities}

    measured = stages.run(f"{optic.name}: FSC (half-bit, one-bit, against truth), PSD, PSNR", measure)
    run = OpticRun(optic, image, fit, volumes, measured["truth"], measured["fsc"], measured["psd"],
                   measured["psnr"], shifts, fsc_warnings=measured["warnings"], densities=measured["densities"],
                   check=check)
    run.numbers = _numbers(run, fwhm)
    return run


def _numbers(run: OpticRun, fwhm: float) -> dict[str, Any]:
    """The figures of one optic for the report's table and ``results.json``; resolutions as half periods."""
    optic, curves = run.optic, run.fsc
    per_element = {
        element: {
            f"{grid}_{threshold}_half_period_nm": _resolution(curves[grid], threshold, element)
            for grid in ("lr", "hr") for threshold in ("half-bit", "one-bit")
        } | {f"{grid}_truth_half_period_nm": _resolution(curves[f"{grid}_truth"], "0.5", element)
             for grid in ("lr", "hr")}
        for element in ELEMENTS
    }
    keys = {"lr": ("lr", optic.threshold), "hr": ("hr", optic.threshold),
            "lr_truth": ("lr_truth", "0.5"), "hr_truth": ("hr_truth", "0.5")}
    half = {name: _resolution(curves[curve], t) for name, (curve, t) in keys.items()}
    full = {name: _resolution(curves[curve], t, period="full") for name, (curve, t) in keys.items()}
    return {
        "probe_fit_nm": {"geometric_mean": fwhm, "major": float(run.probe_fit.fwhm_major_nm),
                         "minor": float(run.probe_fit.fwhm_minor_nm),
                         "major_stderr": float(run.probe_fit.fwhm_major_nm_stderr)},
        "probe_true_nm": optic.probe_nm,
        "threshold": optic.threshold,
        "resolution_convention": RESOLUTION_CONVENTION,
        **{f"{name}_half_period_nm": value for name, value in half.items()},
        **{f"{name}_full_period_nm": value for name, value in full.items()},
        "combined_half_period_nm": float(combined_resolution_nm(fwhm, half["lr"])),
        "combined_truth_half_period_nm": float(combined_resolution_nm(optic.probe_nm, half["lr_truth"])),
        "fsc_warnings": list(run.fsc_warnings),
        "psnr_db": run.psnr_db,
        "alignment_rms_shift_nm": run.alignment_shift_nm,
        "per_element": per_element,
        "lr_voxel_nm": optic.step_nm, "hr_voxel_nm": optic.step_nm / 2, "truth_voxel_nm": optic.truth_voxel_nm,
        "units": {"maps": AREA_UNITS, "volumes": VOLUME_UNITS},
        "mean_density": {grid: float(run.densities[grid].sel(element="Ni_K").mean()) for grid in ("lr", "hr", "truth")},
        "psd_hr_over_lr_low_frequency": _psd_ratio(run.psd["hr"], run.psd["lr"], optic.step_nm),
        "consistency": run.check["numbers"],
    }


def _psd_ratio(hr: xr.Dataset, lr: xr.Dataset, step_nm: float) -> float:
    """Median HR/LR PSD ratio (Ni) over shells below a quarter of the LR Nyquist frequency: 1 for equal content."""
    cut = 0.25 / (2 * step_nm)
    a, b = hr.psd.sel(element="Ni_K"), lr.psd.sel(element="Ni_K")
    fa, fb = a.frequency.values, b.frequency.values
    good = np.isfinite(a.values) & (a.values > 0) & (fa > 0)
    keep = np.isfinite(b.values) & (b.values > 0) & (fb > fa[good].min()) & (fb < cut)
    if not keep.any():
        return math.nan
    # The log-spaced shells of the two grids differ: HR interpolated (log-log) at the LR shells.
    at = np.exp(np.interp(np.log(fb[keep]), np.log(fa[good]), np.log(a.values[good])))
    return float(np.median(at / b.values[keep]))


def _scan_modes(settings: dict[str, Any]) -> dict[str, xr.DataArray]:
    """Supplementary Fig. 1: one HR map scanned step by step and on the fly, and its spectra."""
    optic = OPTICS[0]
    pixel = optic.truth_voxel_nm
    hr = nmc_particle((4 * settings["size"], 4 * settings["size"]), pixel_nm=pixel, seed=settings["seed"],
                      grain_nm=6 * optic.step_nm)
    scans = {
        mode: simulate_scan(hr, step_nm=optic.step_nm, probe=optic.probe, scan_mode=mode, noise=True,
                            seed=settings["seed"])
        for mode in ("step", "fly")
    }
    return {"hr": hr, **scans, **{f"{mode}_spectrum": spectrum_cube(scan).sum(("y", "x"))
                                  for mode, scan in scans.items()}}


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_demo(out: str | Path, *, size: int = 64, angles: int | None = None, rows: int | None = None,
             seed: int = 7, overwrite: bool = False, report: bool = True) -> DemoRun:
    """Run the paper's experiment on generated data for both optics and write the report.

    Parameters
    ----------
    out
        Folder for the stores, ``results.json`` and ``report/``; it must be
        empty or absent unless ``overwrite``.
    size
        Scan points across the field of view: a multiple of 4, at least 32
        and at least the model's receptive field (``2 r + 1`` LR pixels for
        its ``receptive_radius`` ``r``: 29 for ``rdn-small-x2``), so that
        no output pixel sees the zero padding past a projection's border
        instead of data. The default, 64, is sized for two to three minutes
        on two otherwise idle CPU cores (docs/demo.md has the measured
        times); the time grows about as ``size^2`` times ``rows`` times
        ``angles``.
    angles
        Projections per dataset over 180 degrees; default ``size``, which
        with the interleaved second dataset makes ``2 * size`` angles in all.
    rows
        LR rows of each projection (slices of the volume, along the rotation
        axis); default the larger of ``size / 4`` and the model's receptive
        field rounded up to a multiple of 4. Fewer than the receptive field
        are refused.
    seed
        Seeds the particles, drift and noise.
    overwrite
        Delete an earlier ``out`` first.
    report
        Write ``report/index.html`` and its figures.

    Returns
    -------
    DemoRun
        Every number and curve the report shows.
    """
    from xrfsr_dask.model import load_model

    out = Path(out)
    if size < 32 or size % 4:
        raise ValueError(f"size must be a multiple of 4 and at least 32 scan points; got {size}.")
    model = load_model(MODEL)
    field_px = 2 * model.config.receptive_radius + 1
    smallest = 4 * math.ceil(field_px / 4)
    if size < field_px:
        raise ValueError(
            f"size must be at least the receptive field of {MODEL} ({field_px} LR pixels), or the network sees "
            f"zero padding instead of data at every pixel; got {size}. Use --size {smallest} or more.")
    n_rows = max(size // 4, smallest) if rows is None else int(rows)
    if n_rows < field_px:
        raise ValueError(f"rows must be at least the receptive field of {MODEL} ({field_px} LR pixels); got {n_rows}.")
    n_angles = size if angles is None else int(angles)
    if n_angles < 8:
        raise ValueError(f"angles must be at least 8 projections per dataset; got {n_angles}.")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise StoreExistsError(f"{out} exists and is not empty; pass --overwrite to replace the demo output.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"size": size, "rows": n_rows, "angles": n_angles, "seed": seed, "drift_nm": 40.0,
                "counts": 2.5, "elements": list(ELEMENTS), "scan_mode": "fly", "model": MODEL,
                "model_card": {key: model.card.get(key) for key in ("name", "parameters", "weights_sha256")},
                "receptive_field_px": field_px, "algorithm": "fbp", "refine_iterations": REFINE_ITERATIONS,
                "check_projections": min(CHECK_PROJECTIONS, n_angles), "library_version": __version__}
    stages = _Stages(total=len(OPTICS) * 10 + 2 + int(report))

    from xrfsr_dask.cluster import get_client

    client = stages.run("start a local dask cluster (2 workers, 1 thread each)",
                        lambda: get_client("cpu", n_workers=2, threads_per_worker=1))
    try:
        runs = [_optic_run(optic, out, settings, stages, client) for optic in OPTICS]
    finally:
        client.close()
        client.cluster.close()
    modes = stages.run("Supplementary Fig. 1: step and fly scans of one map", lambda: _scan_modes(settings))
    demo = DemoRun(out, settings, runs, modes, stages.seconds)
    if report:
        from xrfsr_dask.report import write_report

        stages.run(f"write the report -> {out / 'report' / 'index.html'}", lambda: write_report(demo, out / "report"))
    demo.seconds["total"] = round(time.perf_counter() - stages.start, 2)
    results = {
        "settings": settings,
        "optics": {run.optic.name: {"optic": asdict(run.optic), **run.numbers} for run in runs},
        "seconds": demo.seconds,
    }
    (out / "results.json").write_text(json.dumps(_json_ready(results), indent=2))
    print(f"done in {demo.seconds['total']:.1f} s: {out / 'report' / 'index.html' if report else out / 'results.json'}")
    return demo
