"""The X-ray probe: a Gaussian model, batched fits of images and line scans, resolution sums.

A nanoprobe's focus is close to a 2-D Gaussian: its size is the full width at
half maximum (FWHM) along the two principal axes. :func:`fit_probe` fits a
rotated 2-D Gaussian plus a constant background to one probe image or to many
at once (a probe per energy, per scan, per ptychographic reconstruction);
:func:`fit_line` fits 1-D line scans, either a line-spread profile across a
thin feature (Gaussian) or a knife-edge scan across a sharp edge (error
function). Both run a Levenberg–Marquardt fit of the whole batch together on
NumPy or, for CuPy input, on the GPU, and return an :class:`xarray.Dataset`
with every parameter in nm (or degrees), its standard error, and a status
saying whether and why not each fit converged.

:func:`combined_resolution_nm` adds two independent blurs in quadrature, the
way Wu et al. (2023) estimate the resolution of a scan from probe size and
step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import xarray as xr

from xrfsr_dask import _gaussfit
from xrfsr_dask._backend import array_module
from xrfsr_dask._grid import grid_nm, per_axis
from xrfsr_dask.errors import MissingMetadataError
from xrfsr_dask.schema import add_provenance

__all__ = [
    "FWHM_PER_SIGMA",
    "STATUS",
    "GaussianProbe",
    "TailedProbe",
    "as_probe",
    "combined_resolution_nm",
    "fit_line",
    "fit_probe",
]

FWHM_PER_SIGMA = _gaussfit.FWHM_PER_SIGMA
"""FWHM of a Gaussian in units of its standard deviation, 2·sqrt(2·ln 2) ≈ 2.3548."""

STATUS = _gaussfit.STATUS
"""Meaning of each value of the ``status`` variable of a fit result (CF ``flag_meanings``)."""
MIN_SIZE = 5
_PURPOSE = "fits report and work"


def combined_resolution_nm(probe_nm: Any, step_or_fsc_nm: Any) -> Any:
    """Resolution of a scan from two independent blurs: ``sqrt(b² + s²)``.

    Parameters
    ----------
    probe_nm
        Probe size ``b`` (FWHM) in nm.
    step_or_fsc_nm
        Scan step, or the resolution measured by FSC, ``s`` in nm.

    Returns
    -------
    float or array
        The combined resolution in nm (same shape as the broadcast inputs).

    References
    ----------
    Wu, L. et al. Resolution-enhanced X-ray fluorescence microscopy via deep
    residual networks. npj Comput. Mater. 9, 43 (2023), Supplementary Fig. 3.
    https://doi.org/10.1038/s41524-023-00995-9

    Examples
    --------
    >>> round(combined_resolution_nm(61.6, 72.0), 1)   # FZP, the paper's 94.8 nm
    94.8
    """
    b = np.asarray(probe_nm, dtype=np.float64)
    s = np.asarray(step_or_fsc_nm, dtype=np.float64)
    for name, value in (("probe_nm", b), ("step_or_fsc_nm", s)):
        if not np.all(np.isfinite(value)) or np.any(value < 0):
            raise ValueError(f"{name} must be finite and >= 0 nm; got {value.tolist()!r}.")
    out = np.hypot(b, s)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class GaussianProbe:
    """A rotated 2-D Gaussian probe.

    Parameters
    ----------
    fwhm_nm
        FWHM in nm: one number for a round probe, or ``(major, minor)``.
    angle_deg
        Direction of the major axis, in degrees from the +x axis towards +y.

    Examples
    --------
    >>> GaussianProbe(61.6).sigma_nm[0] == 61.6 / FWHM_PER_SIGMA
    True
    """

    fwhm_nm: float | tuple[float, float]
    angle_deg: float = 0.0

    def __post_init__(self) -> None:
        fwhm = np.atleast_1d(np.asarray(self.fwhm_nm, dtype=np.float64))
        if fwhm.shape not in ((1,), (2,)) or not np.all(np.isfinite(fwhm)) or np.any(fwhm <= 0):
            raise ValueError(
                f"fwhm_nm must be one positive number or (major, minor) in nm; got {self.fwhm_nm!r}."
            )
        if not math.isfinite(self.angle_deg):
            raise ValueError(f"angle_deg must be finite; got {self.angle_deg!r}.")

    @property
    def fwhm_pair_nm(self) -> tuple[float, float]:
        """``(major, minor)`` FWHM in nm."""
        fwhm = np.atleast_1d(np.asarray(self.fwhm_nm, dtype=np.float64))
        return (float(fwhm[0]), float(fwhm[-1]))

    @property
    def sigma_nm(self) -> tuple[float, float]:
        """``(major, minor)`` standard deviation in nm."""
        major, minor = self.fwhm_pair_nm
        return (major / FWHM_PER_SIGMA, minor / FWHM_PER_SIGMA)

    @classmethod
    def from_fit(cls, fit: xr.Dataset) -> GaussianProbe:
        """The probe described by a single :func:`fit_probe` result."""
        if fit["status"].size != 1:
            raise ValueError(
                f"from_fit needs the fit of one image; this result holds {fit['status'].size} "
                "(select one, e.g. fit.isel(image=0))."
            )
        if not bool(fit["converged"]):
            raise ValueError(f"the probe fit did not converge: {fit['reason'].item()}.")
        return cls(
            (float(fit["fwhm_major_nm"]), float(fit["fwhm_minor_nm"])), float(fit["angle_deg"])
        )

    def image(
        self,
        y_nm: Any,
        x_nm: Any,
        *,
        center_nm: tuple[float, float] = (0.0, 0.0),
        normalize: Literal["peak", "sum"] = "peak",
    ) -> Any:
        """The probe intensity on the grid ``y_nm × x_nm`` (1-D coordinates in nm).

        ``normalize="peak"`` gives 1 at the centre; ``"sum"`` makes the
        sampled values add up to 1 (a convolution kernel).
        """
        xp = array_module(y_nm, x_nm)
        y = xp.asarray(y_nm, dtype=xp.float64)[:, None] - center_nm[0]
        x = xp.asarray(x_nm, dtype=xp.float64)[None, :] - center_nm[1]
        sa, sb = self.sigma_nm
        phi = math.radians(self.angle_deg)
        u = x * math.cos(phi) + y * math.sin(phi)
        v = -x * math.sin(phi) + y * math.cos(phi)
        out = xp.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2))
        if normalize == "sum":
            return out / xp.sum(out)
        if normalize != "peak":
            raise ValueError(f"normalize must be 'peak' or 'sum'; got {normalize!r}.")
        return out

    def reach_nm(self, sigmas: float) -> float:
        """Distance from the centre beyond which the intensity is negligible: ``sigmas`` major sigmas."""
        return sigmas * self.sigma_nm[0]


@dataclass(frozen=True)
class TailedProbe:
    """A focused probe with the tails and side lobes that real optics add to the Gaussian core.

    The intensity is a mixture of normalised 2-D Gaussians that together
    carry unit power: the core (``1 - tail - lobes`` of the power), a round
    halo ``tail_width`` times wider than the core's major FWHM (the diffuse
    tails of a zone plate's Airy pattern and of scattered light), and pairs
    of side lobes at ``± lobe_offset`` core major FWHM along the two
    principal axes, each as wide as the core (the side lobes of a
    multilayer Laue lens pair, whose 1-D focal profiles are close to
    sinc²).

    Attributes
    ----------
    core
        The central Gaussian.
    tail, tail_width
        Power fraction and FWHM (in core major FWHMs) of the halo.
    lobes, lobe_offset
        Power fraction of all four side lobes together, and their distance
        from the centre in core major FWHMs.

    Examples
    --------
    >>> probe = TailedProbe(GaussianProbe(60.0), tail=0.1, tail_width=4.0)
    >>> probe.fwhm_pair_nm
    (60.0, 60.0)
    """

    core: GaussianProbe
    tail: float = 0.0
    tail_width: float = 4.0
    lobes: float = 0.0
    lobe_offset: float = 1.6

    def __post_init__(self) -> None:
        if not isinstance(self.core, GaussianProbe):
            raise TypeError(f"core must be a GaussianProbe; got {type(self.core).__name__}.")
        if not (0 <= self.tail and 0 <= self.lobes and self.tail + self.lobes < 1):
            raise ValueError(
                f"tail and lobes are power fractions: each >= 0 and together < 1; got tail={self.tail}, "
                f"lobes={self.lobes}."
            )
        if not (self.tail_width >= 1 and self.lobe_offset > 0):
            raise ValueError(
                f"tail_width must be >= 1 and lobe_offset > 0 (in core FWHMs); got {self.tail_width}, "
                f"{self.lobe_offset}."
            )

    @property
    def angle_deg(self) -> float:
        """Direction of the core's major axis."""
        return self.core.angle_deg

    @property
    def fwhm_pair_nm(self) -> tuple[float, float]:
        """``(major, minor)`` FWHM of the core in nm (a Gaussian fit of the whole probe reports wider)."""
        return self.core.fwhm_pair_nm

    @property
    def sigma_nm(self) -> tuple[float, float]:
        """``(major, minor)`` standard deviation of the core in nm."""
        return self.core.sigma_nm

    def reach_nm(self, sigmas: float) -> float:
        """Distance from the centre beyond which every component's intensity is negligible."""
        major = self.core.fwhm_pair_nm[0]
        reach = self.core.reach_nm(sigmas)
        if self.tail:
            reach = max(reach, sigmas * self.tail_width * self.core.sigma_nm[0])
        if self.lobes:
            reach = max(reach, self.lobe_offset * major + self.core.reach_nm(sigmas))
        return reach

    def image(
        self,
        y_nm: Any,
        x_nm: Any,
        *,
        center_nm: tuple[float, float] = (0.0, 0.0),
        normalize: Literal["peak", "sum"] = "peak",
    ) -> Any:
        """The probe intensity on the grid ``y_nm × x_nm`` (1-D coordinates in nm); see :meth:`GaussianProbe.image`."""
        if normalize not in ("peak", "sum"):
            raise ValueError(f"normalize must be 'peak' or 'sum'; got {normalize!r}.")
        major, minor = self.core.fwhm_pair_nm
        core_area = major * minor
        out = (1 - self.tail - self.lobes) * self.core.image(y_nm, x_nm, center_nm=center_nm)
        if self.tail:
            halo = GaussianProbe(major * self.tail_width)
            out = out + self.tail / self.tail_width**2 * core_area / major**2 * halo.image(
                y_nm, x_nm, center_nm=center_nm)
        if self.lobes:
            phi = math.radians(self.core.angle_deg)
            d = self.lobe_offset * major
            for dy, dx in ((math.sin(phi), math.cos(phi)), (math.cos(phi), -math.sin(phi))):
                for sign in (1.0, -1.0):
                    centre = (center_nm[0] + sign * d * dy, center_nm[1] + sign * d * dx)
                    out = out + self.lobes / 4 * self.core.image(y_nm, x_nm, center_nm=centre)
        xp = array_module(out)
        return out / (xp.sum(out) if normalize == "sum" else xp.max(out))


# --------------------------------------------------------------------------- xarray layer


def _as_dataarray(data: Any, core: tuple[str, ...]) -> xr.DataArray:
    if isinstance(data, xr.DataArray):
        missing = [d for d in core if d not in data.dims]
        if missing:
            raise ValueError(
                f"input has dims {data.dims}; expected {core} as its last dims "
                f"(missing {missing}); rename them, e.g. obj.rename(...)."
            )
        return data.transpose(..., *core)
    if not hasattr(data, "ndim"):
        data = np.asarray(data)
    if data.ndim < len(core):
        raise ValueError(f"input has shape {data.shape}; expected at least {len(core)} dims {core}.")
    extra = data.ndim - len(core)
    batch = ("image",) if extra == 1 else tuple(f"dim_{i}" for i in range(extra))
    return xr.DataArray(data, dims=batch + core)


def _check_options(max_iter: int, errors: str) -> None:
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}.")
    if errors not in ("robust", "uniform"):
        raise ValueError(f"errors must be 'robust' or 'uniform'; got {errors!r}.")


def _whole_images(da: xr.DataArray, core: tuple[str, ...]) -> xr.DataArray:
    """Dask input with whole images (or profiles) in every chunk; other input unchanged."""
    return da.chunk({d: -1 for d in core}) if hasattr(da.data, "dask") else da


def _fit_table(
    da: xr.DataArray,
    core: tuple[str, ...],
    grids: list[tuple[float, float]],
    kind: str,
    derive: Callable[..., dict[str, np.ndarray]],
    names: tuple[str, ...],
    **kwargs: Any,
) -> xr.DataArray:
    """Fit every item and derive the reported quantities, one NumPy step per chunk of items.

    ``derive(packed, scale=, centre=)`` turns the packed rows of
    :func:`xrfsr_dask._gaussfit.fit_arrays` (on centred axes in units of
    ``scale`` nm) into the arrays named ``names``; the result has them, then
    ``iterations`` and ``status``, along a ``field`` dim. Keeping that
    arithmetic in the chunk's own task (not in xarray operations on the
    whole batch) costs one pass over small arrays.
    """
    sizes = [da.sizes[d] for d in core]
    if min(sizes) < MIN_SIZE:
        raise ValueError(
            f"input has {dict(zip(core, sizes, strict=True))} samples; a fit needs at least "
            f"{MIN_SIZE} along each of {core}."
        )
    # Centred axes in units of ``scale`` nm, half the widest extent (coordinates within ±1), keep the normal
    # equations well conditioned: in pixel units the offset's diagonal falls below the solver's floor
    # (_lm.DIAGONAL_FLOOR of the largest), its steps are over-damped and a probe fit takes 4 iterations, not 3.
    scale = max(abs(step) * (n - 1) / 2 for (_, step), n in zip(grids, sizes, strict=True))
    centre = [origin + step * (n - 1) / 2 for (origin, step), n in zip(grids, sizes, strict=True)]
    axes = [
        (origin + step * np.arange(n) - c) / scale
        for (origin, step), n, c in zip(grids, sizes, centre, strict=True)
    ]
    xp = array_module(da.data) if not hasattr(da.data, "dask") else np
    axes = [xp.asarray(a) for a in axes]
    da = _whole_images(da, core)

    def fit(data: Any, **options: Any) -> np.ndarray:
        packed = _gaussfit.fit_arrays(data, **options)
        with np.errstate(invalid="ignore"):  # screened items are NaN throughout
            columns = derive(packed, scale=scale, centre=centre)
        return np.stack([*(columns[name] for name in names), packed[..., -2], columns["status"]], axis=-1)

    return xr.apply_ufunc(
        fit,
        da,
        input_core_dims=[list(core)],
        output_core_dims=[["field"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"field": len(names) + 2}},
        kwargs={"axes": axes, "kind": kind, "single": da.ndim == len(core), **kwargs},
    )


def _checked_status(
    packed: np.ndarray, values: dict[str, np.ndarray], *, failed: np.ndarray, outside: np.ndarray,
    width_bad: np.ndarray,
) -> dict[str, np.ndarray]:
    """``values`` with the status after the checks of fitted values (first failure wins), and
    NaN in place of the results of items screened out before fitting."""
    status = packed[..., -1].copy()
    for code, problem in (("fit_failed", failed), ("centre_outside", outside), ("width_out_of_range", width_bad)):
        status = np.where((status == 0) & problem, STATUS.index(code), status)
    screened = np.isin(status, [STATUS.index(s) for s in _gaussfit.SCREENED])
    return {**{name: np.where(screened, np.nan, v) for name, v in values.items()}, "status": status}


def _dataset(table: xr.DataArray, variables: dict[str, tuple[str, str]], attrs: dict[str, Any]) -> xr.Dataset:
    """The Dataset of a :func:`_fit_table`: one variable per field, with units and long names."""
    fields = [table.isel(field=i).drop_vars("field", errors="ignore") for i in range(table.sizes["field"])]
    out = {
        name: field.assign_attrs(units=units, long_name=long_name)
        for field, (name, (units, long_name)) in zip(fields[:-2], variables.items(), strict=True)
    }
    out["iterations"] = fields[-2].astype(np.int32).assign_attrs(units="1", long_name="Levenberg-Marquardt iterations")
    return xr.Dataset({**out, **_status_vars(fields[-1])}, attrs=attrs)


def _status_vars(status: xr.DataArray) -> dict[str, xr.DataArray]:
    status = status.astype(np.int8).assign_attrs(
        flag_values=list(range(len(STATUS))), flag_meanings=" ".join(STATUS),
        long_name="fit status",
    )
    table = np.asarray(STATUS, dtype=object)
    reason = xr.apply_ufunc(
        lambda s: table[np.asarray(s, dtype=np.intp)], status,
        dask="parallelized", output_dtypes=[object],
    )
    return {
        "status": status,
        "converged": (status == 0).assign_attrs(long_name="fit converged"),
        "reason": reason.assign_attrs(long_name="why the fit did not converge ('converged' if it did)"),
    }


_PROBE_VARIABLES: dict[str, tuple[str, str]] = {
    "amplitude": ("input units", "peak height above offset"),
    "offset": ("input units", "constant background"),
    "center_y_nm": ("nm", "probe centre, y"),
    "center_x_nm": ("nm", "probe centre, x"),
    "sigma_major_nm": ("nm", "standard deviation along the major axis"),
    "sigma_minor_nm": ("nm", "standard deviation along the minor axis"),
    "fwhm_major_nm": ("nm", "FWHM along the major axis"),
    "fwhm_minor_nm": ("nm", "FWHM along the minor axis"),
    "fwhm_nm": ("nm", "geometric-mean FWHM (round probe of equal area)"),
    "angle_deg": ("deg", "major axis direction from +x towards +y"),
    "amplitude_stderr": ("input units", "standard error of amplitude"),
    "offset_stderr": ("input units", "standard error of offset"),
    "center_y_nm_stderr": ("nm", "standard error of center_y_nm"),
    "center_x_nm_stderr": ("nm", "standard error of center_x_nm"),
    "sigma_major_nm_stderr": ("nm", "standard error of sigma_major_nm"),
    "sigma_minor_nm_stderr": ("nm", "standard error of sigma_minor_nm"),
    "fwhm_major_nm_stderr": ("nm", "standard error of fwhm_major_nm"),
    "fwhm_minor_nm_stderr": ("nm", "standard error of fwhm_minor_nm"),
    "angle_deg_stderr": ("deg", "standard error of angle_deg"),
    "residual_rms": ("input units", "root-mean-square residual"),
}


def _probe_columns(
    packed: np.ndarray, *, scale: float, centre: list[float], bounds: tuple[float, float, float, float],
    smallest: float, largest: float,
) -> dict[str, np.ndarray]:
    """The variables of :func:`fit_probe` from packed rows (A, yc, xc, σ₁, σ₂, θ, B, their errors, rms, ...)."""
    fields = np.moveaxis(packed[..., :15], -1, 0)
    amp, yc, xc, sa, sb, phi, off, e_amp, e_yc, e_xc, e_sa, e_sb, e_phi, e_off, rms = fields
    sa, sb = abs(sa) * scale, abs(sb) * scale
    swap = sa < sb
    major, minor = np.where(swap, sb, sa), np.where(swap, sa, sb)
    e_major, e_minor = np.where(swap, e_sb, e_sa) * scale, np.where(swap, e_sa, e_sb) * scale
    angle = np.rad2deg(phi) + np.where(swap, 90.0, 0.0)
    angle = -((-angle + 90.0) % 180.0) + 90.0  # wrap into (-90, 90]
    centre_y, centre_x = yc * scale + centre[0], xc * scale + centre[1]
    lo_y, hi_y, lo_x, hi_x = bounds
    values = {
        "amplitude": amp, "offset": off, "center_y_nm": centre_y, "center_x_nm": centre_x,
        "sigma_major_nm": major, "sigma_minor_nm": minor,
        "fwhm_major_nm": major * FWHM_PER_SIGMA, "fwhm_minor_nm": minor * FWHM_PER_SIGMA,
        "fwhm_nm": np.sqrt(major * minor) * FWHM_PER_SIGMA, "angle_deg": angle,
        "amplitude_stderr": e_amp, "offset_stderr": e_off,
        "center_y_nm_stderr": e_yc * scale, "center_x_nm_stderr": e_xc * scale,
        "sigma_major_nm_stderr": e_major, "sigma_minor_nm_stderr": e_minor,
        "fwhm_major_nm_stderr": e_major * FWHM_PER_SIGMA, "fwhm_minor_nm_stderr": e_minor * FWHM_PER_SIGMA,
        "angle_deg_stderr": np.rad2deg(e_phi), "residual_rms": rms,
    }
    return _checked_status(
        packed, values,
        failed=~(np.isfinite(major) & np.isfinite(minor)),
        outside=(centre_y < lo_y) | (centre_y > hi_y) | (centre_x < lo_x) | (centre_x > hi_x),
        width_bad=(minor < smallest) | (major > largest),
    )


_LINE_VARIABLES: dict[str, tuple[str, str]] = {
    "amplitude": ("input units", "peak height (gaussian) or edge step (knife-edge)"),
    "offset": ("input units", "constant background"),
    "center_nm": ("nm", "peak or edge position"),
    "sigma_nm": ("nm", "probe standard deviation along the scan"),
    "fwhm_nm": ("nm", "probe FWHM along the scan"),
    "amplitude_stderr": ("input units", "standard error of amplitude"),
    "offset_stderr": ("input units", "standard error of offset"),
    "center_nm_stderr": ("nm", "standard error of center_nm"),
    "sigma_nm_stderr": ("nm", "standard error of sigma_nm"),
    "fwhm_nm_stderr": ("nm", "standard error of fwhm_nm"),
    "residual_rms": ("input units", "root-mean-square residual"),
}


def _line_columns(
    packed: np.ndarray, *, scale: float, centre: list[float], bounds: tuple[float, float], step: float
) -> dict[str, np.ndarray]:
    """The variables of :func:`fit_line` from packed rows (A, x₀, σ, B, their errors, rms, ...)."""
    amp, xc, sig, off, e_amp, e_xc, e_sig, e_off, rms = np.moveaxis(packed[..., :9], -1, 0)
    sig = abs(sig) * scale
    centre_nm = xc * scale + centre[0]
    lo, hi = bounds
    values = {
        "amplitude": amp, "offset": off, "center_nm": centre_nm, "sigma_nm": sig, "fwhm_nm": sig * FWHM_PER_SIGMA,
        "amplitude_stderr": e_amp, "offset_stderr": e_off, "center_nm_stderr": e_xc * scale,
        "sigma_nm_stderr": e_sig * scale, "fwhm_nm_stderr": e_sig * scale * FWHM_PER_SIGMA, "residual_rms": rms,
    }
    return _checked_status(
        packed, values,
        failed=~np.isfinite(sig),
        outside=(centre_nm < lo) | (centre_nm > hi),
        width_bad=(sig < 0.1 * step) | (sig > hi - lo),
    )


def fit_probe(
    probe: Any,
    *,
    pixel_nm: float | Sequence[float] | None = None,
    max_iter: int = 200,
    xtol: float = 1.49012e-8,
    ftol: float = 1.49012e-8,
    errors: Literal["robust", "uniform"] = "robust",
) -> xr.Dataset:
    """Fit a rotated 2-D Gaussian plus background to one or many probe images.

    The model is ``A·exp(-u²/2σ₁² - v²/2σ₂²) + B`` with ``(u, v)`` the
    position relative to the centre along the principal axes, which make
    the angle θ with (x, y). All images are fitted together by a batched
    Levenberg–Marquardt solver, on the GPU when ``probe`` is a CuPy array.
    The fit is unweighted least squares, as :func:`scipy.optimize.curve_fit`
    does by default. Its standard errors are by default the sandwich
    (heteroscedasticity-consistent) estimate, because the counting noise of
    a probe image grows with the signal: curve_fit's estimate,
    ``sqrt(diag((JᵀJ)⁻¹)·RSS/(m - 7))``, spreads the noise evenly over the
    image and understates the error of amplitude and width 2–3 times on
    Poisson images (``benchmarks/probe_fit.py`` measures both).

    Parameters
    ----------
    probe
        Intensity image(s), or complex probe(s) (a ptychographic
        reconstruction: ``|P|²`` is fitted). A DataArray with dims
        ``(..., "y", "x")`` and coordinates in nm, or a NumPy/CuPy/dask array
        whose last two axes are y and x (then ``pixel_nm`` is required, and
        a 3-D array's first axis is named ``image``). Leading dims are the
        batch and are kept in the result.
    pixel_nm
        Pixel size in nm, one number or ``(y, x)``, for inputs without
        coordinates.
    max_iter
        Iterations before an image is reported as ``max_iterations``.
    xtol, ftol
        Relative step and relative decrease of the residual sum of squares
        below which a fit has converged (MINPACK's criteria and defaults,
        as in :func:`scipy.optimize.curve_fit`).
    errors
        ``"robust"``: sandwich standard errors, the square roots of the
        diagonal of ``(JᵀJ)⁻¹ Jᵀ diag(r²/(1 - h)) J (JᵀJ)⁻¹`` (HC2; ``h`` the
        leverage of each pixel), right whatever the noise variance does
        across the image.
        ``"uniform"``: curve_fit's, right only when every pixel has the same
        noise variance.

    Returns
    -------
    xarray.Dataset
        Over the batch dims: ``amplitude``, ``offset`` (input units),
        ``center_y_nm``, ``center_x_nm``, ``fwhm_major_nm``,
        ``fwhm_minor_nm``, ``sigma_major_nm``, ``sigma_minor_nm``,
        ``fwhm_nm`` (geometric mean of the two FWHMs: the round probe of the
        same area), ``angle_deg`` (major axis from +x towards +y, in
        (-90, 90]), a ``*_stderr`` for each fitted parameter,
        ``residual_rms``, ``iterations``, ``status`` / ``converged`` /
        ``reason`` (see :data:`STATUS`). Results are NumPy arrays on the
        host whatever the input's device; for dask input they are lazy, one
        task per chunk of images, which is how to spread a batch over
        several cores or a cluster.

    Raises
    ------
    ValueError
        For a single image that is non-finite, constant or peaks on its
        border, or any image smaller than 5×5. In a batch such images are
        marked not converged with their reason and the rest are fitted.

    Notes
    -----
    The angle of a round probe is undetermined; its standard error is then
    very large and the FWHMs are still well defined.

    Examples
    --------
    >>> import numpy as np
    >>> y = x = np.arange(32) * 5.0 - 80
    >>> image = GaussianProbe(61.6).image(y, x)
    >>> fit = fit_probe(image, pixel_nm=5.0)
    >>> round(float(fit.fwhm_nm), 3)
    61.6
    """
    _check_options(max_iter, errors)
    core = ("y", "x")
    da = _as_dataarray(probe, core)
    pixels = per_axis(pixel_nm, core)
    grids = [
        grid_nm(da, d, p, name="input", purpose=_PURPOSE) for d, p in zip(core, pixels, strict=True)
    ]
    (lo_y, hi_y), (lo_x, hi_x) = (
        (origin, origin + step * (da.sizes[d] - 1)) for (origin, step), d in zip(grids, core, strict=True)
    )
    derive = partial(
        _probe_columns, bounds=(lo_y, hi_y, lo_x, hi_x), smallest=0.1 * min(step for _, step in grids),
        largest=max(hi_y - lo_y, hi_x - lo_x),
    )
    table = _fit_table(da, core, grids, "probe", derive, tuple(_PROBE_VARIABLES), max_iter=max_iter, xtol=xtol,
                       ftol=ftol, errors=errors)
    ds = _dataset(table, _PROBE_VARIABLES, {"model": "A*exp(-u^2/(2 sa^2) - v^2/(2 sb^2)) + B"})
    return add_provenance(
        ds, "xrfsr_dask.probe.fit_probe",
        {"pixel_nm": [step for _, step in grids], "max_iter": max_iter, "xtol": xtol, "ftol": ftol,
         "errors": errors},
    )


def fit_line(
    profile: Any,
    *,
    kind: Literal["gaussian", "knife-edge"] = "gaussian",
    dim: str | None = None,
    pixel_nm: float | None = None,
    max_iter: int = 200,
    xtol: float = 1.49012e-8,
    ftol: float = 1.49012e-8,
    errors: Literal["robust", "uniform"] = "robust",
) -> xr.Dataset:
    """Fit 1-D line scans: a Gaussian line spread or an error-function knife edge.

    ``kind="gaussian"`` fits ``A·exp(-(x-x₀)²/2σ²) + B`` to a scan across a
    feature much thinner than the probe; ``kind="knife-edge"`` fits
    ``A·(1 + erf((x-x₀)/(√2σ)))/2 + B`` to a scan across a sharp edge
    (``A < 0`` for a falling edge). Either way σ is the probe's standard
    deviation along the scan direction and its FWHM is ``2.3548·σ``.

    Parameters
    ----------
    profile
        Line scan(s): a DataArray whose dim ``dim`` (default: its last) has
        a coordinate in nm, or an array whose last axis is the scan
        (then ``pixel_nm`` is required).
    kind
        ``"gaussian"`` or ``"knife-edge"``.
    dim
        Name of the scan dimension of a DataArray.
    pixel_nm
        Sample spacing in nm, for inputs without a coordinate.
    max_iter, xtol, ftol, errors
        As for :func:`fit_probe`.

    Returns
    -------
    xarray.Dataset
        ``amplitude``, ``offset``, ``center_nm``, ``sigma_nm``, ``fwhm_nm``,
        their ``*_stderr``, ``residual_rms``, ``iterations``, ``status`` /
        ``converged`` / ``reason``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.special import erf
    >>> x = np.arange(64) * 4.0
    >>> edge = 500 * (1 + erf((x - 130) / (np.sqrt(2) * 24.7 / FWHM_PER_SIGMA))) / 2
    >>> round(float(fit_line(edge, kind="knife-edge", pixel_nm=4.0).fwhm_nm), 2)
    24.7
    """
    _check_options(max_iter, errors)
    if kind not in ("gaussian", "knife-edge"):
        raise ValueError(f"kind must be 'gaussian' or 'knife-edge'; got {kind!r}.")
    if dim is None:
        dim = str(profile.dims[-1]) if isinstance(profile, xr.DataArray) else "x"
    da = _as_dataarray(profile, (dim,))
    grid = grid_nm(da, dim, pixel_nm, name="input", purpose=_PURPOSE)
    derive = partial(_line_columns, bounds=(grid[0], grid[0] + grid[1] * (da.sizes[dim] - 1)), step=grid[1])
    table = _fit_table(da, (dim,), [grid], kind, derive, tuple(_LINE_VARIABLES), max_iter=max_iter, xtol=xtol,
                       ftol=ftol, errors=errors)
    ds = _dataset(table, _LINE_VARIABLES, {"model": kind})
    return add_provenance(
        ds, "xrfsr_dask.probe.fit_line",
        {"kind": kind, "pixel_nm": grid[1], "max_iter": max_iter, "xtol": xtol, "ftol": ftol, "errors": errors},
    )


def as_probe(
    probe: Any, data: xr.DataArray | None = None, *, name: str = "data", purpose: str = "the forward model"
) -> GaussianProbe | TailedProbe:
    """The probe a forward model needs, from what the caller gave or from the data's metadata.

    Parameters
    ----------
    probe
        A :class:`GaussianProbe` or :class:`TailedProbe` (returned as is), a
        FWHM in nm, or ``(major, minor)`` FWHM in nm; ``None`` reads the
        ``probe_fwhm_nm`` attribute of ``data``.
    data, name, purpose
        The data whose attribute stands in for ``probe=None``, and how the
        error names them and what needs the probe.

    Raises
    ------
    MissingMetadataError
        ``probe`` is None and ``data`` carries no ``probe_fwhm_nm``.
    TypeError
        ``probe`` is none of the above.

    Examples
    --------
    >>> as_probe((70.0, 45.0)).fwhm_pair_nm
    (70.0, 45.0)
    """
    if probe is None:
        fwhm = None if data is None else data.attrs.get("probe_fwhm_nm")
        if fwhm is None:
            raise MissingMetadataError(
                f"{name}.attrs['probe_fwhm_nm'] is None: {purpose} needs the probe size. Pass "
                "probe=<FWHM in nm> (one number, (major, minor), or a GaussianProbe, e.g. "
                "GaussianProbe.from_fit(fit_probe(...))), or --probe-fwhm on the command line, or set the "
                f"attribute on the {name}."
            )
        return GaussianProbe(float(fwhm))
    if isinstance(probe, (GaussianProbe, TailedProbe)):
        return probe
    if not isinstance(probe, (bool, str)):
        try:
            fwhm = np.asarray(probe, dtype=np.float64)
        except (TypeError, ValueError):
            fwhm = None
        if fwhm is not None and fwhm.shape in ((), (1,), (2,)):
            return GaussianProbe(float(fwhm) if fwhm.size == 1 else (float(fwhm[0]), float(fwhm[1])))
    raise TypeError(
        f"probe must be a FWHM in nm, (major, minor) in nm, a GaussianProbe or a TailedProbe; got {probe!r}."
    )
