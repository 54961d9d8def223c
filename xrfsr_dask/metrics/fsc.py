"""Fourier ring and shell correlation: resolution from two independent measurements.

Two maps (FRC) or volumes (FSC) of the same object, measured or
reconstructed independently, agree at the spatial frequencies that carry
signal and decorrelate where noise dominates. The correlation per frequency
shell,

    FSC(k) = Σ Re(F₁ F₂*) / sqrt(Σ |F₁|² · Σ |F₂|²)      (sums over shell k),

falls from 1 towards 0; the resolution follows from the frequency ``f`` where
it first drops below a threshold curve, in two conventions, both reported:

- full period ``1 / f``: the period of the finest grating the data resolve;
- half period ``1 / (2 f)``: the width of its lines (or gaps), the convention
  of X-ray microscopy and the one Wu et al. (2023) report (their LR figures
  are bounded below by the scan step, the half period at the Nyquist
  frequency). At Nyquist ``f = 1 / (2 d)`` the half period is one pixel.

The thresholds offered are:

- ``"half-bit"`` and ``"one-bit"``: information-based curves of van Heel &
  Schatz (2005), functions of the number ``n`` of Fourier samples in the shell;
- ``"1/7"``: the fixed 0.143 of Rosenthal & Henderson (2003);
- ``"3-sigma"``: three standard deviations of the correlation of pure noise,
  ``3 / sqrt(n/2)`` (``n/2`` because a real signal's spectrum is
  conjugate-symmetric, so only half its samples are independent).

Wu et al. (2023) report the half-bit crossing for the FZP data and the
one-bit crossing for the MLL data, both between two independent tomography
series.

Between two *enhanced* datasets the crossing measures how reproducible the
enhancement is, not the resolution: the same network processed both, so
what it adds to both correlates. :func:`frc` and :func:`fsc` warn
(:class:`~xrfsr_dask.errors.EnhancedFSCWarning`) when the provenance of both
inputs records an enhancement.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from xrfsr_dask import _progress
from xrfsr_dask.errors import EnhancedFSCWarning
from xrfsr_dask.metrics import _inputs
from xrfsr_dask.metrics._spectral import Shells, spectrum_sums
from xrfsr_dask.metrics._spectral import window as make_window
from xrfsr_dask.schema import add_provenance

__all__ = ["THRESHOLDS", "frc", "fsc", "split_even_odd", "threshold_curve"]

ThresholdName = Literal["half-bit", "one-bit", "1/7", "3-sigma"]
THRESHOLDS: tuple[ThresholdName, ...] = ("half-bit", "one-bit", "1/7", "3-sigma")
"""Names of the threshold curves, in the order they are reported by default."""


def threshold_curve(name: ThresholdName | float, n: Any) -> np.ndarray:
    """A threshold curve at shells holding ``n`` Fourier samples each.

    Parameters
    ----------
    name
        ``"half-bit"``, ``"one-bit"``, ``"1/7"``, ``"3-sigma"``, or a number
        for a fixed threshold.
    n
        Number of samples per shell (full spectrum, both conjugate halves).

    Returns
    -------
    numpy.ndarray
        The threshold at each ``n`` (NaN where ``n`` is 0 for the
        ``n``-dependent curves).

    References
    ----------
    van Heel, M. & Schatz, M. Fourier shell correlation threshold criteria.
    J. Struct. Biol. 151, 250–262 (2005). https://doi.org/10.1016/j.jsb.2005.05.009

    Rosenthal, P. B. & Henderson, R. Optimal determination of particle
    orientation, absolute hand, and contrast loss in single-particle
    electron cryomicroscopy. J. Mol. Biol. 333, 721–745 (2003).
    https://doi.org/10.1016/j.jmb.2003.07.013

    Examples
    --------
    >>> float(threshold_curve("half-bit", 1e4).round(4))
    0.186
    """
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.where(n > 0, np.sqrt(n), np.nan)
        if name == "half-bit":
            return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)
        if name == "one-bit":
            return (0.5 + 2.4142 / root) / (1.5 + 1.4142 / root)
        if name == "1/7":
            return np.full_like(n, 1 / 7)
        if name == "3-sigma":
            return 3.0 / np.sqrt(np.where(n > 0, n / 2, np.nan))
    if isinstance(name, int | float) and not isinstance(name, bool) and 0 < name < 1:
        return np.full_like(n, float(name))
    raise ValueError(
        f"unknown threshold {name!r}; use one of {THRESHOLDS} or a fixed number in (0, 1)."
    )


def _crossing(freq: np.ndarray, curve: np.ndarray, limit: np.ndarray) -> float:
    """Frequency where ``curve`` first falls below ``limit`` (linear between shells), NaN if never.

    Shell 0 (the zero frequency) is skipped, and so are shells where the
    threshold is 1 or more (few samples: no correlation can pass it). A curve
    already below at the first shell searched crosses at that shell.
    """
    diff = np.where(limit < 1, curve - limit, np.nan)
    below = np.flatnonzero(diff[1:] < 0)
    if below.size == 0:
        return float("nan")
    k = int(below[0]) + 1
    if k == 1 or not np.isfinite(diff[k - 1]):
        return float(freq[k])
    fraction = diff[k - 1] / (diff[k - 1] - diff[k])
    return float(freq[k - 1] + fraction * (freq[k] - freq[k - 1]))


ENHANCE_OPERATION = "xrfsr_dask.enhance.enhance"
"""The provenance operation that marks data as enhanced by a network."""


def _enhanced_by(x: Any) -> str | None:
    """The model named by the last enhancement in ``x``'s provenance; None if it records none."""
    attrs = getattr(x, "attrs", None)
    records = attrs.get("provenance", []) if isinstance(attrs, dict) else []
    if not isinstance(records, list | tuple):
        return None
    found = None
    for record in records:
        if isinstance(record, dict) and record.get("operation") == ENHANCE_OPERATION:
            parameters = record.get("parameters")
            model = parameters.get("model") if isinstance(parameters, dict) else None
            found = str(model) if model else "a network"
    return found


def _warn_if_both_enhanced(a: Any, b: Any, kind: str) -> None:
    """Warn when both inputs' provenance records an enhancement (the crossing is then not a resolution).

    One enhanced input against an unenhanced one (a ground truth, an
    independent measurement) is what to do instead, so it does not warn.
    """
    models = {"a": _enhanced_by(a), "b": _enhanced_by(b)}
    if None in models.values():
        return
    name = kind.upper()
    inputs = " and ".join(f"{label} (enhanced by {model})" for label, model in models.items())
    warnings.warn(
        f"{name} between two enhanced datasets, {inputs}, per their provenance: the same network processed "
        f"both, so what it adds to both correlates and the {name} crossing measures how reproducible the "
        "enhancement is, not the resolution (it can claim finer detail than the data hold). Instead, compare "
        f"one enhanced dataset with a ground truth where one exists ({kind}(enhanced, truth)), or check the "
        "enhanced data against the measured data with xrfsr_dask.consistency.consistency(enhanced, measured) "
        "(xrfsr check ENHANCED MEASURED).",
        EnhancedFSCWarning,
        stacklevel=4,
    )


def _correlation(
    a: Any,
    b: Any,
    *,
    spatial: tuple[str, ...],
    kind: str,
    pixel_nm: float | Sequence[float] | None,
    shell_width: float,
    window: str | tuple | None,
    thresholds: Sequence[ThresholdName | float],
    progress: bool,
) -> xr.Dataset:
    names = [str(t) for t in thresholds]
    for t in thresholds:
        threshold_curve(t, 1.0)
    _warn_if_both_enhanced(a, b, kind)
    first = _inputs.as_batch(a, "a", spatial, pixel_nm)
    second = _inputs.as_batch(b, "b", spatial, pixel_nm)
    _inputs.check_pair(first, second)
    shells = Shells.linear(first.shape, first.spacing_nm, shell_width)
    apodise = make_window(window, first.shape, np.dtype(np.float64))
    keys, tasks = [], []
    for (where, x), (_, y) in zip(first.blocks(), second.blocks(), strict=True):
        keys.append(where)
        tasks.append(
            spectrum_sums([_inputs.prepare(x, apodise), _inputs.prepare(y, apodise)], shells, "cross")
        )
    if first.is_dask or second.is_dask:
        tasks = _progress.compute(tasks, progress=progress, description=kind.upper())
    sums = np.stack(tasks).reshape(first.data.shape[: len(first.batch_dims)] + (4, shells.count))
    count, cross, power_a, power_b = np.moveaxis(sums, -2, 0)
    for label, power in (("a", power_a), ("b", power_b)):
        _inputs.check_finite(power, label)
        flat = power[..., 1:].reshape(-1, shells.count - 1).sum(axis=-1)
        if np.any(flat == 0):
            raise ValueError(
                f"{label} is constant (all samples equal) in at least one map; its spectrum has no "
                f"power above zero frequency, so the {kind.upper()} is undefined."
            )
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cross / np.sqrt(power_a * power_b)
    n = count.reshape(-1, shells.count)[0]
    curves = np.stack([threshold_curve(t, n) for t in thresholds])
    flat_corr = corr.reshape(-1, shells.count)
    crossings = np.array(
        [[_crossing(shells.centres, c, curve) for curve in curves] for c in flat_corr]
    ).reshape(corr.shape[:-1] + (len(names),))
    batch = list(first.batch_dims)
    coords: dict[str, Any] = {
        "frequency": ("frequency", shells.centres, {"units": "1/nm", "long_name": "spatial frequency"}),
        "threshold": ("threshold", names),
        **first.batch_coords(),
    }
    with np.errstate(divide="ignore"):
        full_period = 1.0 / crossings
    label = "Fourier ring correlation" if kind == "frc" else "Fourier shell correlation"
    ds = xr.Dataset(
        {
            "correlation": (batch + ["frequency"], corr, {"units": "1", "long_name": label}),
            "samples": ("frequency", n.round().astype(np.int64),
                        {"units": "1", "long_name": "Fourier samples in shell"}),
            "threshold_curve": (["threshold", "frequency"], curves, {"units": "1"}),
            "crossing_frequency": (
                batch + ["threshold"],
                crossings,
                {"units": "1/nm", "long_name": "frequency f where the correlation crosses the threshold"},
            ),
            "resolution_full_period_nm": (
                batch + ["threshold"],
                full_period,
                {
                    "units": "nm",
                    "long_name": "full-period resolution",
                    "definition": "1 / f at the crossing frequency f: the period of the finest resolved "
                    "grating; NaN: never crossed",
                },
            ),
            "resolution_half_period_nm": (
                batch + ["threshold"],
                full_period / 2,
                {
                    "units": "nm",
                    "long_name": "half-period resolution",
                    "definition": "1 / (2 f) at the crossing frequency f: the line width of the finest "
                    "resolved grating, the X-ray microscopy convention (Wu et al. 2023); NaN: never crossed",
                },
            ),
        },
        coords=coords,
        attrs={
            "kind": kind,
            "spacing_nm": list(first.spacing_nm),
            "shell_width": float(shell_width),
            "shell_width_per_nm": float(shells.width or 0.0),  # linear shells always have a width
            "window": "none" if window is None else str(window),
        },
    )
    return add_provenance(
        ds, f"xrfsr_dask.metrics.{kind}",
        {"shell_width": shell_width, "window": ds.attrs["window"], "thresholds": names},
    )


def frc(
    a: Any,
    b: Any,
    *,
    pixel_nm: float | Sequence[float] | None = None,
    shell_width: float = 1.0,
    window: str | tuple | None = None,
    thresholds: Sequence[ThresholdName | float] = THRESHOLDS,
    progress: bool = True,
) -> xr.Dataset:
    """Fourier ring correlation of two independent 2-D maps, and the resolution it implies.

    Parameters
    ----------
    a, b
        Two independent measurements of the same object on the same grid:
        DataArrays with dims ``y, x`` (coordinates in nm) and optionally a
        batch such as ``element`` or ``angle``, or bare 2-D NumPy/CuPy/dask
        arrays with ``pixel_nm``.
    pixel_nm
        Pixel size in nm, one number or ``(y, x)``; only needed without
        coordinates (and then checked against them if both are given).
    shell_width
        Ring width in units of the coarsest frequency step ``max 1/(n d)``.
        Rings are centred on multiples of the width and end at the smallest
        Nyquist frequency; corners of the spectrum are left out.
    window
        Apodisation applied to both inputs before the FFT (after subtracting
        each one's mean): any ``scipy.signal.get_window`` spec such as
        ``"hann"`` or ``("tukey", 0.25)``; ``None`` for none.
    thresholds
        Threshold curves to report, see :func:`threshold_curve`.
    progress
        Show a progress bar while dask input is computed.

    Returns
    -------
    xarray.Dataset
        ``correlation`` (batch..., frequency), ``samples`` (Fourier samples
        per ring), ``threshold_curve`` (threshold, frequency), and per
        (batch..., threshold): ``crossing_frequency`` ``f`` in 1/nm,
        ``resolution_half_period_nm`` ``1 / (2 f)`` (the X-ray microscopy
        convention, the paper's) and ``resolution_full_period_nm`` ``1 / f``,
        NaN where a curve is never crossed (the resolution is then finer than
        the pixel grid can show: half period one pixel). ``frequency`` is in 1/nm.

    Warns
    -----
    EnhancedFSCWarning
        When the provenance of both ``a`` and ``b`` records an enhancement
        (``xrfsr_dask.enhance.enhance``): the crossing then measures how
        reproducible the enhancement is, not the resolution. One enhanced
        input against an unenhanced reference (a ground truth) does not warn.

    Notes
    -----
    Sums run over the half spectrum of a real FFT with each conjugate pair
    counted twice, which equals the sums over the full spectrum. Integer and
    float16/float32 input is transformed in float32, float64 in float64. Dask
    input larger than memory is transformed in two passes (the other axes
    per chunk, then the first axis per block) and the ring sums added up.
    Non-finite input and constant input (FRC undefined) raise ``ValueError``.

    A grating of period ``p`` has lines and gaps ``p / 2`` wide; its
    frequency is ``1 / p``. The half period is what X-ray microscopy quotes
    (a "30 nm resolution" zone plate resolves 30 nm lines and spaces) and
    what Wu et al. (2023) report; quote the full period only where a
    reference does.

    References
    ----------
    van Heel, M. & Schatz, M. J. Struct. Biol. 151, 250–262 (2005).
    https://doi.org/10.1016/j.jsb.2005.05.009

    Wu, L. et al. Resolution-enhanced X-ray fluorescence microscopy via deep
    residual networks. npj Comput. Mater. 9, 43 (2023).
    https://doi.org/10.1038/s41524-023-00995-9

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> rng = np.random.default_rng(0)
    >>> truth = ndimage.gaussian_filter(rng.normal(size=(128, 128)), 2.0)
    >>> a, b = (truth + 0.05 * rng.normal(size=truth.shape) for _ in "ab")
    >>> result = frc(a, b, pixel_nm=10.0, progress=False)
    >>> result.correlation.dims
    ('frequency',)
    >>> half_bit = result.sel(threshold="half-bit")
    >>> round(float(half_bit.resolution_half_period_nm)), round(float(half_bit.resolution_full_period_nm))
    (20, 39)
    """
    return _correlation(
        a,
        b,
        spatial=("y", "x"),
        kind="frc",
        pixel_nm=pixel_nm,
        shell_width=shell_width,
        window=window,
        thresholds=thresholds,
        progress=progress,
    )


def fsc(
    a: Any,
    b: Any,
    *,
    voxel_nm: float | Sequence[float] | None = None,
    shell_width: float = 1.0,
    window: str | tuple | None = None,
    thresholds: Sequence[ThresholdName | float] = THRESHOLDS,
    progress: bool = True,
) -> xr.Dataset:
    """Fourier shell correlation of two independent 3-D volumes, and the resolution it implies.

    Parameters
    ----------
    a, b
        Two independent reconstructions on the same grid: DataArrays with
        dims ``z, y, x`` (coordinates in nm) and optionally ``element``, or
        bare 3-D NumPy/CuPy/dask arrays with ``voxel_nm``. Voxels may be
        anisotropic.
    voxel_nm
        Voxel size in nm, one number or ``(z, y, x)``; only needed without
        coordinates.
    shell_width, window, thresholds, progress
        As for :func:`frc`.

    Returns
    -------
    xarray.Dataset
        As for :func:`frc` (``resolution_half_period_nm`` and
        ``resolution_full_period_nm``), with spherical shells. Dask volumes larger than
        memory are handled chunk by chunk (2-D FFTs per ``z`` chunk, a
        rechunk, FFTs along ``z``, shell sums added up): the result equals
        the in-memory one within float tolerance.

    Warns
    -----
    EnhancedFSCWarning
        As for :func:`frc`: when both volumes were reconstructed from
        enhanced data (the enhancement record travels in the provenance).

    References
    ----------
    van Heel, M. & Schatz, M. J. Struct. Biol. 151, 250–262 (2005).
    https://doi.org/10.1016/j.jsb.2005.05.009

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=(32, 32, 32))
    >>> result = fsc(truth, truth + rng.normal(size=truth.shape), voxel_nm=20.0, progress=False)
    >>> bool(result.correlation[1:].min() > 0.4)
    True
    """
    return _correlation(
        a,
        b,
        spatial=("z", "y", "x"),
        kind="fsc",
        pixel_nm=voxel_nm,
        shell_width=shell_width,
        window=window,
        thresholds=thresholds,
        progress=progress,
    )


def split_even_odd(series: xr.DataArray, *, dim: str = "angle") -> tuple[xr.DataArray, xr.DataArray]:
    """Split a projection series into its even- and odd-indexed halves along ``dim``.

    Reconstructing each half gives two volumes with independent noise, the
    usual pair for an FSC when a second full dataset does not exist; each half
    has half the angular sampling, so the FSC of the halves is a conservative
    estimate of the full series' resolution.

    Returns
    -------
    (even, odd)
        ``series[dim = 0, 2, 4, ...]`` and ``series[dim = 1, 3, 5, ...]``,
        with equal lengths (a last unpaired item is dropped).
    """
    if not isinstance(series, xr.DataArray) or dim not in series.dims:
        dims = getattr(series, "dims", None)
        raise ValueError(f"split_even_odd needs a DataArray with a {dim!r} dim; got dims {dims}.")
    n = series.sizes[dim] // 2
    if n < 2:
        raise ValueError(f"{dim!r} has {series.sizes[dim]} items; need at least 4 to split in two.")
    even = series.isel({dim: slice(0, 2 * n, 2)})
    odd = series.isel({dim: slice(1, 2 * n, 2)})
    return even, odd
