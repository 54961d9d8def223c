"""The data-consistency check: forward-project an enhanced map and compare it with the measured counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from xrfsr_dask._backend import array_module
from xrfsr_dask.consistency._align import meta_like, overlapped, pair_up, probe_record, resolve_halo, trim
from xrfsr_dask.consistency.operator import ProbeLike, ScanOperator
from xrfsr_dask.consistency.poisson import expected_deviance, poisson_deviance
from xrfsr_dask.errors import StoreExistsError
from xrfsr_dask.io._zarr import DEFAULT_CHUNKS, location
from xrfsr_dask.io.reading import open_xrf
from xrfsr_dask.io.status import store_status
from xrfsr_dask.schema import add_provenance

__all__ = ["COUNT_TOLERANCE", "EXCESS_TOLERANCE", "consistency", "consistency_to_zarr", "consistency_url"]

EXCESS_TOLERANCE = 0.5
"""Default verdict, first half: the mean deviance per scan pixel may exceed what Poisson noise alone gives
(:func:`~xrfsr_dask.consistency.expected_deviance`) by this much. An excess ``e`` is a systematic error of
``√e`` noise standard deviations (RMS): 0.5 allows 0.7 of the counting noise. Not tighter: the noise-free
truth itself, averaged onto a 25 nm grid, shows an excess up to 0.45 against a 50 nm fly scan with a 60 nm
probe at ~1000 counts per scan pixel (the fine grid and the kernel sampled on it cannot follow sharp edges
to 3 %; ``benchmarks/refine.py``)."""
COUNT_TOLERANCE = 0.02
"""Default verdict, second half: forward-projected counts within this fraction of the measured counts."""
SIGMAS = 3.0
# Standard deviations of Poisson noise added to each tolerance of the verdict.
MARKER = "xrfsr_dask"


def _forward_block(fine: Any, *, operator: ScanOperator, depth: tuple[int, int], nblocks: tuple[int, int],
                   block_id: tuple[int, ...]) -> Any:
    """``A x`` of one block; scan pixels whose probe footprint touches a NaN of ``x`` are NaN, no others."""
    xp = array_module(fine)
    missing = xp.isnan(fine)
    expected = operator.forward(xp.where(missing, 0.0, fine))
    if bool(missing.any()):
        touched = operator.forward(missing.astype(xp.float64)) > 1e-9
        expected = xp.where(touched, xp.nan, expected)
    return trim(expected, depth, block_id, nblocks)


def consistency(
    enhanced: xr.DataArray,
    measured: xr.DataArray,
    *,
    probe: ProbeLike | None = None,
    halo: int | None = None,
    excess_tolerance: float = EXCESS_TOLERANCE,
    count_tolerance: float = COUNT_TOLERANCE,
) -> xr.Dataset:
    """Check an enhanced map against the measured counts it came from, lazily and chunk by chunk.

    The enhanced map is pushed through the scan described by the measured
    data's own metadata (``probe_fwhm_nm``, ``step_nm``, ``scan_mode``,
    ``fast_axis``) — the noise-free :func:`~xrfsr_dask.simulate.simulate_scan`
    of it — and the prediction ``μ`` is compared with the counts ``y``.

    Parameters
    ----------
    enhanced
        Maps or a series on a grid an integer number of times finer than the
        measured scan, its pixels tiling the scan pixels (as
        :func:`~xrfsr_dask.enhance.enhance` makes it); NumPy, CuPy or dask.
        Only the scan pixels it covers whole are compared (both are cropped
        to the common footprint, recorded in ``attrs["crop"]``).
    measured
        The LR maps or series, in counts per scan point.
    probe
        The probe to model, overriding ``measured.attrs["probe_fwhm_nm"]``:
        FWHM in nm, ``(major, minor)``, or a
        :class:`~xrfsr_dask.probe.GaussianProbe` (e.g. from a fit).
    halo
        LR pixels of overlap between chunks; by default (and at least) the
        kernel's reach, which makes the chunked result equal the whole-map one.
    excess_tolerance, count_tolerance
        The verdict ``consistent``: ``excess_deviance`` at most
        ``excess_tolerance + 3·√(2/pixels)`` and ``|count_ratio − 1|`` at
        most ``count_tolerance + 3/√(Σ y)`` (each widened by three standard
        deviations of its statistic under Poisson noise, so small or
        low-count maps are not failed by noise alone).

    Returns
    -------
    xarray.Dataset
        Lazy (dask) variables on the measured grid:

        ``expected`` (element, [angle,] y, x)
            ``μ = A x``, the counts the enhanced map predicts (measured units).
        ``deviance`` (element, [angle,] y, x)
            ``2[y log(y/μ) − (y − μ)]`` per scan pixel (dimensionless).
        ``mean_deviance``, ``expected_mean_deviance`` (element, [angle])
            Its mean over the finite pixels, and the mean a consistent map
            would give from Poisson noise alone (``≈ 1`` above ~10 counts,
            less where counts are few).
        ``excess_deviance`` (element, [angle])
            ``mean_deviance − expected_mean_deviance``: about 0 (within a
            few ``√(2/pixels)``) when consistent; an excess ``e`` is a
            systematic prediction error of ``√e`` noise standard deviations
            (RMS); negative when the map reproduces the measurement's noise.
        ``count_ratio`` (element, [angle])
            ``Σ μ / Σ y``: forward-projected enhanced counts over measured.
        ``total_count_ratio`` (element, [angle])
            Mean of the enhanced map over mean of the measured map: counts
            conserved on the fine grid (both in counts per scan point).
        ``pixels`` (element, [angle])
            Finite pixels compared.
        ``consistent`` (element, [angle])
            The verdict above.

        Attrs carry the scan (``step_nm``, ``ratio``, ``scan_mode``,
        ``fast_axis``, ``probe_fwhm_nm``), ``crop``, the tolerances, and
        ``provenance``: the enhanced data's records plus this one.

    Raises
    ------
    GridMismatchError
        The fine pixel is not the scan step divided by an integer, the fine
        pixels do not tile the scan pixels, or the two do not overlap.
    LabelMismatchError
        Different elements or angles.
    MissingMetadataError
        The measured data carry no probe size and ``probe`` is not given.
    SchemaError
        Inputs that break the data model, or maps against a series.

    Notes
    -----
    The Poisson deviance of pixel ``i`` is twice the log-likelihood ratio of
    the saturated model (``μ = y``) and ``μ``:

    .. math:: D_i = 2\\left[y_i \\log\\frac{y_i}{\\mu_i} - (y_i - \\mu_i)\\right],

    ``y log y = 0`` at ``y = 0``, ``μ ≥`` :data:`~xrfsr_dask.consistency.MU_FLOOR`. For Poisson
    ``y`` around the true ``μ``, ``E[D] ≈ 1 + 1/(6μ)`` (the χ² limit with
    one degree of freedom), so a mean well above 1 — or above
    ``expected_mean_deviance`` for low counts — says the enhanced map
    predicts counts the measurement contradicts, and the ``deviance`` map
    shows where. Hot spots where the measured data had NaN are left out
    (NaN deviance).

    References
    ----------
    McCullagh, P. & Nelder, J. A. Generalized Linear Models, 2nd ed.
    (Chapman & Hall, 1989), §6.2. https://doi.org/10.1007/978-1-4899-3242-6

    Examples
    --------
    >>> import numpy as np
    >>> from xrfsr_dask import nmc_particle, simulate_scan
    >>> hr = nmc_particle((128, 128), pixel_nm=25.0, elements=["Ni_K"], counts=400.0, background=50.0)
    >>> lr = simulate_scan(hr, step_nm=50.0, probe=60.0, scan_mode="fly", noise=True)
    >>> check = consistency(hr, lr)          # the truth is consistent with its own scan
    >>> 0.9 < float(check.mean_deviance.sel(element="Ni_K")) < 1.1
    True
    """
    pair = pair_up(enhanced, measured, probe)
    op = pair.operator
    for name, value in (("excess_tolerance", excess_tolerance), ("count_tolerance", count_tolerance)):
        if not (isinstance(value, int | float) and value > 0):
            raise ValueError(f"{name} must be a positive number; got {value!r}.")
    halo = resolve_halo(halo, op.reach_lr, minimum=op.reach_lr, what="consistency")
    parts = overlapped(pair, halo)
    y, fine = parts.lr, parts.fine
    expected = dsa.map_blocks(
        _forward_block, parts.fine_halo, chunks=y.chunks, dtype=np.float64, meta=meta_like(y, np.float64), operator=op,
        depth=parts.depth, nblocks=y.numblocks[-2:],
    )
    deviance = dsa.map_blocks(poisson_deviance, y, expected, dtype=np.float64, meta=meta_like(y, np.float64))
    valid = dsa.isfinite(deviance)
    e_dev = dsa.where(valid, dsa.map_blocks(expected_deviance, expected, dtype=np.float64,
                                            meta=meta_like(y, np.float64)), np.nan)
    dims, spatial = pair.lr.dims, (-2, -1)
    y64 = y.astype(np.float64)
    mean_dev = dsa.nanmean(deviance, axis=spatial)
    mean_edev = dsa.nanmean(e_dev, axis=spatial)
    measured_total = dsa.where(valid, y64, 0).sum(axis=spatial)
    predicted_total = dsa.where(valid, expected, 0).sum(axis=spatial)
    some = measured_total > 0  # a map without counts has no ratio (NaN)
    count_ratio = dsa.where(some, predicted_total / dsa.where(some, measured_total, 1.0), np.nan)
    measured_mean = dsa.nanmean(y64, axis=spatial)
    total_ratio = dsa.where(some, dsa.nanmean(fine.astype(np.float64), axis=spatial)
                            / dsa.where(some, measured_mean, 1.0), np.nan)
    excess = mean_dev - mean_edev
    pixels = valid.sum(axis=spatial)
    # Each tolerance is widened by three standard deviations of its statistic under Poisson noise alone:
    # the mean of N deviances (variance <= 2 each) and the measured total (variance = the total, at least 1,
    # so a map without counts passes when the prediction is within a few counts of none).
    verdict = (excess <= excess_tolerance + SIGMAS * dsa.sqrt(2.0 / pixels)) & (
        abs(predicted_total - measured_total)
        <= count_tolerance * measured_total + SIGMAS * dsa.sqrt(dsa.maximum(measured_total, 1.0)))
    units = pair.lr.attrs.get("units", "counts")
    maps = dims[:-2]
    coords = {k: v for k, v in pair.lr.coords.items()}
    ds = xr.Dataset(
        {
            "expected": (dims, expected.astype(np.float32), {
                "units": units, "long_name": "counts predicted by the enhanced map (forward model)"}),
            "deviance": (dims, deviance.astype(np.float32), {
                "units": "1", "long_name": "Poisson deviance per scan pixel, 2[y log(y/mu) - (y - mu)]"}),
            "mean_deviance": (maps, mean_dev, {"units": "1 (per scan pixel)", "long_name": "mean Poisson deviance"}),
            "expected_mean_deviance": (maps, mean_edev, {
                "units": "1 (per scan pixel)", "long_name": "mean deviance of Poisson noise around the prediction"}),
            "excess_deviance": (maps, excess, {
                "units": "1 (per scan pixel)", "long_name": "mean deviance beyond Poisson noise"}),
            "count_ratio": (maps, count_ratio, {
                "units": "1", "long_name": "forward-projected enhanced counts / measured counts"}),
            "total_count_ratio": (maps, total_ratio, {
                "units": "1", "long_name": "mean of the enhanced map / mean of the measured map"}),
            "pixels": (maps, pixels, {"units": "1", "long_name": "finite scan pixels compared"}),
            "consistent": (maps, verdict, {"long_name": "excess deviance and count ratio within tolerance"}),
        },
        coords=coords,
    )
    ds.attrs = {
        "step_nm": list(pair.lr.attrs["step_nm"]), "ratio": list(op.ratio), "scan_mode": pair.lr.attrs["scan_mode"],
        "fast_axis": pair.lr.attrs["fast_axis"], **probe_record(pair.probe), "crop": pair.crop,
        "excess_tolerance": float(excess_tolerance), "count_tolerance": float(count_tolerance),
        "units": units, "measured_provenance": list(pair.lr.attrs.get("provenance", [])),
        "provenance": list(pair.fine.attrs.get("provenance", [])),
    }
    return add_provenance(ds, "xrfsr_dask.consistency.consistency", {
        **probe_record(pair.probe), "halo": halo, "crop": pair.crop, "ratio": list(op.ratio),
        "excess_tolerance": excess_tolerance, "count_tolerance": count_tolerance,
    })


def consistency_url(destination: str) -> str:
    """Where :func:`~xrfsr_dask.enhance.enhance_to_zarr` with ``check=True`` writes the check of ``destination``.

    ``scan_hr.zarr`` → ``scan_hr.consistency.zarr`` (any URL; ``.consistency.zarr``
    is appended when the name does not end in ``.zarr``).
    """
    stem = destination.rstrip("/")
    return (stem[:-5] if stem.endswith(".zarr") else stem) + ".consistency.zarr"


def consistency_to_zarr(
    enhanced: str | xr.DataArray,
    measured: str | xr.DataArray,
    destination: str | None = None,
    *,
    probe: ProbeLike | None = None,
    halo: int | None = None,
    excess_tolerance: float = EXCESS_TOLERANCE,
    count_tolerance: float = COUNT_TOLERANCE,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Compute :func:`consistency` and write it to a zarr v3 store, marked complete last.

    Parameters
    ----------
    enhanced, measured
        DataArrays or URLs/paths of xrfsr_dask stores.
    destination
        URL of the new store; by default :func:`consistency_url` of the
        enhanced store's URL (required when ``enhanced`` is a DataArray).
    probe, halo, excess_tolerance, count_tolerance
        As for :func:`consistency`.
    overwrite
        Replace an existing store at ``destination``.
    storage_options
        fsspec options for all three stores.

    Returns
    -------
    xarray.Dataset
        The check, computed (the per-pixel maps as written, the summaries in
        memory). The store's root attributes carry
        ``{"xrfsr_dask": {"complete": true, ...}}`` once every chunk landed.

    Raises
    ------
    StoreExistsError
        ``destination`` exists and ``overwrite`` is false.
    """
    if isinstance(enhanced, str):
        destination = destination or consistency_url(enhanced)
        enhanced = open_xrf(enhanced, storage_options=storage_options)
    if isinstance(measured, str):
        measured = open_xrf(measured, storage_options=storage_options)
    if destination is None:
        raise ValueError("destination is required when enhanced is a DataArray (no store URL to put it beside).")
    result = consistency(enhanced, measured, probe=probe, halo=halo, excess_tolerance=excess_tolerance,
                         count_tolerance=count_tolerance)
    url, options = location(destination, storage_options)
    if store_status(url, storage_options=options).exists and not overwrite:
        raise StoreExistsError(f"{url} already exists; pass overwrite=True (--overwrite) to replace it.")
    result.attrs[MARKER] = {"complete": False, "kind": "consistency"}
    dims = result["deviance"].dims
    maps = [v for v in result.data_vars if result[v].dims == dims]
    summaries = [v for v in result.data_vars if v not in maps]
    # zarr needs regular chunks: the store's default layout, one map by a square of pixels.
    sizes = {d: min(DEFAULT_CHUNKS[str(d)], result.sizes[d]) for d in dims}
    stored = xr.Dataset({v: result[v].chunk(sizes) for v in maps}, attrs=result.attrs)
    # Coordinates (small) in memory, without the encoding of the store they were read from.
    stored = stored.assign_coords({c: (stored[c].dims, np.asarray(stored[c].values), stored[c].attrs)
                                   for c in stored.coords})
    encoding = {v: {"compressors": (ZstdCodec(level=3), Crc32cCodec())} for v in maps}
    written = stored.to_zarr(url, mode="w", zarr_format=3, consolidated=False, compute=False, encoding=encoding,
                             storage_options=options)
    # The summaries reduce the same maps: computed in the same pass as the writes.
    _, *values = dask.compute(written, *(result[v].data for v in summaries))
    computed = xr.Dataset({v: (result[v].dims, value, result[v].attrs)
                           for v, value in zip(summaries, values, strict=True)},
                          coords={c: stored[c] for c in result[summaries].coords}, attrs=stored.attrs)
    computed.to_zarr(url, mode="a", zarr_format=3, consolidated=False, storage_options=options)
    group = zarr.open_group(url, mode="r+", storage_options=options)
    group.attrs[MARKER] = {"complete": True, "kind": "consistency"}
    out = xr.open_zarr(url, zarr_format=3, consolidated=False, storage_options=options)
    return out.load()
