"""Figures of the library's results, one function per kind of figure.

Every function takes the library's own result objects (FRC/FSC and PSD
datasets, probe fits, labeled maps and volumes, training logs), returns a
:class:`matplotlib.figure.Figure` built without ``pyplot`` (so nothing is
drawn into, or left open in, global state; notebooks display the returned
figure, scripts call ``fig.savefig``), and labels every axis with its units.
Images carry a scale bar in nm.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from xrfsr_dask.probe import GaussianProbe

__all__ = [
    "add_scale_bar",
    "plot_frc",
    "plot_fsc",
    "plot_loss_curves",
    "plot_probe_fit",
    "plot_psd",
    "plot_slice_comparison",
    "plot_slices",
]

_THRESHOLD_STYLE = {"half-bit": "--", "one-bit": "-.", "1/7": ":", "3-sigma": (0, (1, 3))}


def _batch_items(data: xr.DataArray) -> list[tuple[str, dict[str, int]]]:
    """``(label, indexer)`` for every batch item (dims other than frequency/threshold)."""
    batch = [str(d) for d in data.dims if d not in ("frequency", "threshold")]
    items = []
    for key in np.ndindex(*(data.sizes[d] for d in batch)):
        where = dict(zip(batch, key, strict=True))
        label = ", ".join(
            str(data[d].values[i]) if d in data.coords else f"{d} {i}" for d, i in where.items()
        )
        items.append((label, where))
    return items


def add_scale_bar(ax: Any, width_nm: float) -> None:
    """Draw a scale bar of a round length (1, 2 or 5 × 10^k nm, about a fifth of ``width_nm``) on ``ax``.

    Parameters
    ----------
    ax
        A matplotlib axes showing an image whose data coordinates are nm.
    width_nm
        The width of the image shown, in nm.
    """
    target = width_nm / 5
    power = 10 ** math.floor(math.log10(target))
    length = max(m * power for m in (1, 2, 5) if m * power <= target)
    label = f"{length / 1000:g} µm" if length >= 1000 else f"{length:g} nm"
    bar = AnchoredSizeBar(
        ax.transData, length, label, "lower right", pad=0.4, color="white", frameon=False, size_vertical=width_nm / 150
    )
    ax.add_artist(bar)


_PERIOD = {
    "half": ("half-period", "1/(2f)", 2.0),
    "full": ("full-period", "1/f", 1.0),
}
"""Resolution conventions: name, formula at the crossing frequency f, and the factor c in 1 / (c f)."""


def plot_fsc(
    result: xr.Dataset,
    *,
    thresholds: Sequence[str] | None = None,
    period: Literal["half", "full"] = "half",
    title: str | None = None,
) -> Figure:
    """Correlation curve(s) with threshold curves and the crossings marked in nm.

    Parameters
    ----------
    result
        The dataset returned by :func:`~xrfsr_dask.metrics.frc` or
        :func:`~xrfsr_dask.metrics.fsc` (one curve per element or other batch item).
    thresholds
        Which threshold curves to draw; default all in ``result``.
    period
        The resolution convention of the legend and the top axis: ``"half"``
        (``1 / (2 f)`` at the crossing frequency ``f``, X-ray microscopy's and
        Wu et al.'s, the default) or ``"full"`` (``1 / f``).
    title
        Figure title; default names the kind (FRC/FSC).

    Returns
    -------
    matplotlib.figure.Figure
        Correlation against spatial frequency (1/nm) with a resolution (nm)
        axis on top; each crossing marked and listed in the legend. The top
        axis label and the legend title name the convention.
    """
    if period not in _PERIOD:
        raise ValueError(f"period must be 'half' or 'full'; got {period!r}.")
    convention, formula, factor = _PERIOD[period]
    names = list(result.threshold.values) if thresholds is None else list(thresholds)
    kind = str(result.attrs.get("kind", "fsc")).upper()
    fig = Figure(figsize=(8, 6), layout="constrained")
    ax = fig.add_subplot()
    freq = result.frequency.values
    for name in names:
        ax.plot(
            freq[1:],
            result.threshold_curve.sel(threshold=name).values[1:],
            color="0.35",
            linestyle=_THRESHOLD_STYLE.get(name, "--"),
            linewidth=1,
            label=f"{name} threshold",
        )
    for label, where in _batch_items(result.correlation):
        curve = result.correlation.isel(where)
        crossings = []
        for name in names:
            f = float(result.crossing_frequency.isel(where).sel(threshold=name))
            if np.isfinite(f):
                crossings.append((name, f))
        text = ", ".join(f"{name} {1.0 / (factor * f):.1f} nm" for name, f in crossings) or "no crossing"
        (line,) = ax.plot(freq[1:], curve.values[1:], linewidth=1.6, label=f"{label or kind}: {text}")
        for _, f in crossings:
            ax.plot(f, float(np.interp(f, freq, curve.values)), "o", color=line.get_color(),
                    markersize=7, markerfacecolor="none")
    ax.axhline(0, color="0.8", linewidth=0.8)
    ax.set_xlim(freq[1] / 2, freq[-1])
    ax.set_ylim(min(-0.1, float(np.nanmin(result.correlation.values[..., 1:])) - 0.05), 1.05)
    ax.set_xlabel("spatial frequency (1/nm)")
    ax.set_ylabel(result.correlation.attrs.get("long_name", "correlation"))
    def to_resolution(x: Any) -> Any:  # 1 / (c f); its own inverse
        return _inverse(factor * np.asarray(x, dtype=np.float64))

    top = ax.secondary_xaxis("top", functions=(to_resolution, to_resolution))
    top.set_xticks(_resolution_ticks(freq[1] / 2, freq[-1], factor=factor))
    top.set_xlabel(f"{convention} resolution {formula} (nm)")
    fig.legend(fontsize=8, loc="outside lower center", ncols=2,
               title=f"circles: crossings f; resolution as {convention} {formula} in nm", title_fontsize=8)
    ax.set_title(title or f"{kind} with threshold curves")
    return fig


plot_frc = plot_fsc
"""Alias of :func:`plot_fsc`: the same figure for a 2-D FRC result."""


def _resolution_ticks(f_low: float, f_high: float, *, factor: float = 1.0) -> list[float]:
    """Round resolutions ``1 / (factor f)`` (1, 2, 5 × 10^k nm) spread over the frequency range."""
    low, high = 1.0 / (factor * f_high), 1.0 / (factor * f_low)
    ticks = [m * 10.0**k for k in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
             for m in (1, 2, 5)]
    kept: list[float] = []
    for t in (t for t in ticks if low <= t <= high):
        # Coarse resolutions crowd towards zero frequency: keep ticks 6 % of the axis apart.
        if not kept or (1.0 / (factor * kept[-1]) - 1.0 / (factor * t)) > 0.06 * f_high:
            kept.append(t)
    return kept


def _inverse(x: Any) -> Any:
    """1/x for the resolution axis, kept finite at and below zero frequency."""
    return 1.0 / np.maximum(np.asarray(x, dtype=np.float64), 1e-12)


_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_STYLES = ["-", "--", ":", "-."]


def plot_psd(
    *spectra: xr.Dataset,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    layout: Literal["overlay", "items"] = "overlay",
) -> Figure:
    """Power spectral densities on log–log axes, e.g. LR against HR.

    Curves are comparable when the inputs share units and grid-independent
    normalisation: :func:`~xrfsr_dask.metrics.psd` is a density per unit
    area or volume, so the same content sampled on two grids gives the same
    curve up to the coarser grid's Nyquist frequency, provided both inputs
    are in the same physical units (e.g. counts per nm³, not per voxel).

    Parameters
    ----------
    *spectra
        Datasets from :func:`~xrfsr_dask.metrics.psd`; each may hold several
        elements (one line per element).
    labels
        One label per dataset (e.g. ``["LR", "HR"]``); default ``"1", "2", ...``.
    title
        Figure title.
    layout
        ``"overlay"``: one axes, a colour and a marker per element, a line
        style per dataset. ``"items"``: one axes per element (or other batch
        item), sharing both axes, a colour and a line style per dataset —
        for elements whose spectra coincide (e.g. equal concentrations).

    Returns
    -------
    matplotlib.figure.Figure
        PSD against spatial frequency (1/nm), zero frequency left out.
    """
    if not spectra:
        raise ValueError("plot_psd needs at least one PSD dataset.")
    labels = list(labels) if labels is not None else [str(i + 1) for i in range(len(spectra))]
    if len(labels) != len(spectra):
        raise ValueError(f"got {len(spectra)} spectra but {len(labels)} labels.")
    if layout not in ("overlay", "items"):
        raise ValueError(f"layout must be 'overlay' or 'items'; got {layout!r}.")
    items = [item for item, _ in _batch_items(spectra[0].psd)]
    unit = f"PSD ({spectra[0].psd.attrs.get('units', '')})".replace("^2", "²").replace("^3", "³")
    if layout == "overlay":
        fig = Figure(figsize=(7, 4.5), layout="constrained")
        axes = dict.fromkeys(items, fig.add_subplot())
    else:
        cols = min(2, len(items))
        rows = math.ceil(len(items) / cols)
        fig = Figure(figsize=(3.6 * cols + 0.6, 2.9 * rows + 0.8), layout="constrained")
        grid = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
        for extra in grid[len(items):]:
            extra.set_visible(False)
        axes = dict(zip(items, grid, strict=False))
    for n, (spectrum, name) in enumerate(zip(spectra, labels, strict=True)):
        freq = spectrum.frequency.values
        for k, (item, where) in enumerate(_batch_items(spectrum.psd)):
            curve = spectrum.psd.isel(where)
            keep = (freq > 0) & np.isfinite(curve.values) & (curve.values > 0)
            ax = axes.get(item, axes[items[0]])
            if layout == "overlay":
                style = {"color": f"C{k}", "marker": _MARKERS[k % len(_MARKERS)], "markersize": 4,
                         "markevery": (n, max(1, int(keep.sum()) // 8)), "label": f"{name} {item}".strip()}
            else:
                style = {"color": f"C{n}", "label": name}
            ax.loglog(freq[keep], curve.values[keep], linestyle=_STYLES[n % len(_STYLES)], **style)
    for item, ax in axes.items():
        ax.set_xlabel("spatial frequency (1/nm)")
        ax.set_ylabel(unit)
        if layout == "items":
            ax.set_title(item, fontsize=10)
            ax.label_outer()
    first = axes[items[0]]
    first.legend(fontsize=8, ncols=1 if layout == "items" else 2)
    if layout == "overlay":
        first.set_title(title or "Power spectral density")
    else:
        fig.suptitle(title or "Power spectral density")
    return fig


def plot_probe_fit(image: xr.DataArray, fit: xr.Dataset, *, title: str | None = None) -> Figure:
    """A probe image with its fitted Gaussian: image, half-maximum contour, and profiles.

    Parameters
    ----------
    image
        One probe intensity image with ``y, x`` coordinates in nm.
    fit
        The result of :func:`~xrfsr_dask.probe.fit_probe` for that image.

    Returns
    -------
    matplotlib.figure.Figure
        Left: the image with the fitted FWHM ellipse and a scale bar. Right:
        measured and fitted profiles through the centre along x and y.
    """
    if set(image.dims) != {"y", "x"}:
        raise ValueError(f"plot_probe_fit needs one image with dims (y, x); got {image.dims}.")
    image = image.transpose("y", "x")
    y, x = image.y.values, image.x.values
    probe = GaussianProbe.from_fit(fit)
    centre = (float(fit.center_y_nm), float(fit.center_x_nm))
    model = float(fit.amplitude) * probe.image(y, x, center_nm=centre) + float(fit.offset)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_img, ax_prof = fig.subplots(1, 2)
    step = (x[1] - x[0], y[1] - y[0])
    extent = (x[0] - step[0] / 2, x[-1] + step[0] / 2, y[-1] + step[1] / 2, y[0] - step[1] / 2)
    shown = ax_img.imshow(image.values, extent=extent, cmap="magma")
    ax_img.contour(x, y, model, levels=[float(fit.offset) + float(fit.amplitude) / 2], colors="cyan", linewidths=1)
    ax_img.set_xlabel("x (nm)")
    ax_img.set_ylabel("y (nm)")
    major, minor = probe.fwhm_pair_nm
    ax_img.set_title(f"FWHM {major:.1f} × {minor:.1f} nm at {probe.angle_deg:.0f}° (cyan: fit at half max)")
    fig.colorbar(shown, ax=ax_img, label=f"intensity ({image.attrs.get('units', 'a.u.')})")
    add_scale_bar(ax_img, abs(extent[1] - extent[0]))
    iy = int(np.argmin(np.abs(y - centre[0])))
    ix = int(np.argmin(np.abs(x - centre[1])))
    ax_prof.plot(x, image.values[iy], "o", markersize=3, label="data, along x")
    ax_prof.plot(x, model[iy], "-", label="fit, along x")
    ax_prof.plot(y, image.values[:, ix], "s", markersize=3, label="data, along y")
    ax_prof.plot(y, model[:, ix], "--", label="fit, along y")
    ax_prof.set_xlabel("position (nm)")
    ax_prof.set_ylabel(f"intensity ({image.attrs.get('units', 'a.u.')})")
    ax_prof.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_slices(
    volume: xr.DataArray,
    *,
    elements: Sequence[str] | None = None,
    axis: str = "z",
    index: int | None = None,
    title: str | None = None,
) -> Figure:
    """Central slices of a volume (or the maps of a map stack), one panel per element.

    Parameters
    ----------
    volume
        ``(element, z, y, x)`` volume or ``(element, y, x)`` maps, coordinates in nm.
    elements
        Which elements to show, in order; default all.
    axis
        For volumes, the axis the slice is normal to (``"z"``, ``"y"`` or ``"x"``).
    index
        Slice index along ``axis``; default the central one.

    Returns
    -------
    matplotlib.figure.Figure
        One image per element with a colour bar (in the data's units) and a scale bar.
    """
    if "element" not in volume.dims:
        volume = volume.expand_dims(element=[volume.name or "map"])
    chosen = list(volume.element.values) if elements is None else list(elements)
    missing = [e for e in chosen if e not in list(volume.element.values)]
    if missing:
        raise ValueError(f"elements {missing} are not in the data; it has {list(volume.element.values)}.")
    spatial = [d for d in ("z", "y", "x") if d in volume.dims]
    if len(spatial) == 3:
        if axis not in spatial:
            raise ValueError(f"axis must be one of {spatial}; got {axis!r}.")
        where = volume.sizes[axis] // 2 if index is None else index
        volume = volume.isel({axis: where})
        spatial.remove(axis)
    rows, cols = spatial
    fig = Figure(figsize=(3.6 * len(chosen), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(chosen)))
    units = volume.attrs.get("units", "counts")
    for ax, element in zip(axes, chosen, strict=True):
        panel = volume.sel(element=element).transpose(rows, cols)
        r, c = panel[rows].values, panel[cols].values
        dr = r[1] - r[0] if r.size > 1 else 1.0
        dc = c[1] - c[0] if c.size > 1 else 1.0
        extent = (c[0] - dc / 2, c[-1] + dc / 2, r[-1] + dr / 2, r[0] - dr / 2)
        shown = ax.imshow(np.asarray(panel.values), extent=extent, cmap="viridis")
        ax.set_title(str(element))
        ax.set_xlabel(f"{cols} (nm)")
        ax.set_ylabel(f"{rows} (nm)")
        fig.colorbar(shown, ax=ax, label=units, shrink=0.85)
        add_scale_bar(ax, abs(extent[1] - extent[0]))
    if title:
        fig.suptitle(title)
    return fig


def plot_slice_comparison(
    volumes: Mapping[str, xr.DataArray],
    *,
    elements: Sequence[str] | None = None,
    axis: Literal["z", "y", "x"] = "z",
    position_nm: float | None = None,
    title: str | None = None,
) -> Figure:
    """Slices of several volumes at one position, one row per volume, one colour scale per element.

    For comparing like with like — LR, HR and ground truth of the same
    sample: each volume is sliced at the voxel nearest ``position_nm``
    (its own grid), and every element's panels share one colour scale and
    one colour bar, so equal colours mean equal values. Give the volumes in
    the same physical units (e.g. counts per nm³, not per voxel).

    Parameters
    ----------
    volumes
        ``label -> (element, z, y, x)`` volume, coordinates in nm, one unit
        (``attrs["units"]``) for all; the labels name the rows.
    elements
        Which elements to show, in order; default all of the first volume's.
    axis
        The axis the slices are normal to.
    position_nm
        Where to slice along ``axis``; default the centre of the first
        volume's central voxel.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        A grid of images (rows: volumes, columns: elements) with scale bars,
        each column with a colour bar labelled with the unit.

    Raises
    ------
    ValueError
        No volumes, volumes in different units, or an element one of them lacks.
    """
    if not volumes:
        raise ValueError("plot_slice_comparison needs at least one volume.")
    labels = list(volumes)
    first = volumes[labels[0]]
    units = {str(v.attrs.get("units", "counts")) for v in volumes.values()}
    if len(units) > 1:
        raise ValueError(f"the volumes are in different units {sorted(units)}; convert them to one scale first.")
    chosen = list(first.element.values) if elements is None else list(elements)
    for label, volume in volumes.items():
        missing = [e for e in chosen if e not in list(volume.element.values)]
        if missing:
            raise ValueError(f"elements {missing} are not in volume {label!r}; it has {list(volume.element.values)}.")
        if axis not in volume.dims:
            raise ValueError(f"axis must be one of the volume's spatial dims; {label!r} has {volume.dims}.")
    if position_nm is None:
        position_nm = float(first[axis].values[first.sizes[axis] // 2])
    rows_dim, cols_dim = (d for d in ("z", "y", "x") if d != axis)
    slices = {label: v.sel({axis: position_nm}, method="nearest").sel(element=chosen).transpose(
        "element", rows_dim, cols_dim) for label, v in volumes.items()}
    fig = Figure(figsize=(3.5 * len(chosen) + 0.8, 3.0 * len(labels) + 1.0), layout="constrained")
    axes = fig.subplots(len(labels), len(chosen), squeeze=False)
    unit = units.pop()
    for j, element in enumerate(chosen):
        values = np.concatenate([np.asarray(s.sel(element=element).values).ravel() for s in slices.values()])
        values = values[np.isfinite(values)]
        low, high = (float(np.percentile(values, 0.5)), float(np.percentile(values, 99.5))) if values.size else (0, 1)
        shown: Any = None
        for i, label in enumerate(labels):
            panel = slices[label].sel(element=element)
            r, c = panel[rows_dim].values, panel[cols_dim].values
            dr = r[1] - r[0] if r.size > 1 else 1.0
            dc = c[1] - c[0] if c.size > 1 else 1.0
            extent = (c[0] - dc / 2, c[-1] + dc / 2, r[-1] + dr / 2, r[0] - dr / 2)
            ax = axes[i, j]
            shown = ax.imshow(np.asarray(panel.values), extent=extent, cmap="viridis", vmin=low, vmax=high)
            at = float(panel[axis].values)
            ax.set_title(f"{label}: {element}, {axis} = {at:.0f} nm", fontsize=9)
            ax.set_xlabel(f"{cols_dim} (nm)")
            ax.set_ylabel(f"{rows_dim} (nm)")
            add_scale_bar(ax, abs(extent[1] - extent[0]))
        fig.colorbar(shown, ax=axes[:, j], location="bottom", shrink=0.8, label=f"{element} ({unit})")
    if title:
        fig.suptitle(title)
    return fig


def plot_loss_curves(log: xr.Dataset | str | os.PathLike, *, title: str | None = None) -> Figure:
    """Training curves: loss per epoch for the train, validation and test sets.

    Parameters
    ----------
    log
        A Dataset with dim ``epoch`` and any of the variables ``train``,
        ``validation``, ``test``; or the path of a CSV file with a header
        ``epoch,train,validation,test`` (columns other than ``epoch`` optional).

    Returns
    -------
    matplotlib.figure.Figure
        Loss against epoch, log scale on the loss axis.
    """
    if not isinstance(log, xr.Dataset):
        table = np.genfromtxt(os.fspath(log), delimiter=",", names=True)
        if table.dtype.names is None or "epoch" not in table.dtype.names:
            raise ValueError(f"{os.fspath(log)!r} has no 'epoch' column; expected a header epoch,train,...")
        log = xr.Dataset(
            {name: ("epoch", np.atleast_1d(table[name])) for name in table.dtype.names if name != "epoch"},
            coords={"epoch": np.atleast_1d(table["epoch"])},
        )
    splits = [name for name in ("train", "validation", "test") if name in log]
    if "epoch" not in log.dims or not splits:
        raise ValueError("the training log needs an 'epoch' dim and at least one of train/validation/test.")
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for name in splits:
        ax.plot(log.epoch.values, log[name].values, marker="o", markersize=3, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"loss ({log.attrs.get('loss', 'L1')}, {log.attrs.get('units', 'normalised counts')})")
    ax.legend()
    ax.set_title(title or "Training curves")
    return fig
