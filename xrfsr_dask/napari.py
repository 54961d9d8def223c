"""napari reader for xrfsr_dask stores and their OME-Zarr exports (npe2 plugin ``xrfsr_dask``).

napari finds the reader through the ``napari.manifest`` entry point and
``napari.yaml`` beside this module; nothing here imports napari. Opening a
store gives one image layer per element, named by the element, placed in
nm (``scale`` and ``translate`` from the coordinates, ``units`` nm), lazy:

- an OME-Zarr export of :func:`~xrfsr_dask.io.to_ome_zarr` opens as a
  multiscale layer, so napari reads only the level and the chunks in view.
  Levels of a ``"sum"`` pyramid are shown divided by their bin area
  (counts per level-0 pixel), so that one contrast range fits every level;
  the stored counts are unchanged.
- a store of :func:`~xrfsr_dask.io.save` opens at its one resolution
  (napari reads the whole plane in view: export large maps first,
  ``xrfsr export SRC DST --format ome-zarr``).

A series keeps its angle as a slider (``axis_labels`` ``angle``, ``y``,
``x``); a volume its ``z``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
import zarr

from xrfsr_dask.io.ome import FORMAT, open_pyramid
from xrfsr_dask.io.store import MARKER, open_xrf
from xrfsr_dask.schema import NAME, kind_of

__all__ = ["napari_get_reader", "read_xrfsr"]

LayerData = tuple[Any, dict[str, Any], str]
_COLORMAPS = ("red", "green", "blue", "magenta", "cyan", "yellow", "bop orange", "gray")


def _marker(path: str) -> Mapping[str, Any] | None:
    """The xrfsr_dask marker of the zarr group at ``path``, or None when it is not such a store."""
    try:
        group = zarr.open_group(path, mode="r", zarr_format=3)
    except (FileNotFoundError, ValueError, TypeError, KeyError, zarr.errors.NodeTypeValidationError):
        return None
    marker = group.attrs.get(MARKER)
    if not isinstance(marker, Mapping):
        return None
    if marker.get("format") == FORMAT or NAME in group:
        return marker
    return None


def napari_get_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[LayerData]] | None:
    """The reader for ``path`` when it is an xrfsr_dask store or OME-Zarr export, else None.

    Only the group's ``zarr.json`` is read to decide, so napari can offer
    every other reader a folder this one declines.
    """
    if not isinstance(path, str):
        if len(path) != 1:
            return None
        path = path[0]
    return read_xrfsr if _marker(str(path)) is not None else None


def _placement(data: xr.DataArray) -> tuple[list[float], list[float], list[str], list[str]]:
    """``scale``, ``translate``, axis labels and units of the dims after ``element``."""
    scale, translate, labels, units = [], [], [], []
    for dim in data.dims[1:]:
        values = np.asarray(data[dim].values, dtype=np.float64)
        step = float(values[1] - values[0]) if values.size > 1 else 1.0
        uniform = values.size < 2 or bool(np.allclose(np.diff(values), step, rtol=1e-6))
        if dim == "angle" and not uniform:  # by index; the angles are in the layer metadata
            scale.append(1.0)
            translate.append(0.0)
            units.append("pixel")
        else:
            scale.append(step)
            translate.append(float(values[0]))
            units.append("degree" if dim == "angle" else "nm")
        labels.append(str(dim))
    return scale, translate, labels, units


def _metadata(data: xr.DataArray, path: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": path, "kind": kind_of(data), "units": data.attrs.get("units"),
                            "provenance": data.attrs.get("provenance", [])}
    if "angle" in data.dims:
        meta["angle_deg"] = [float(a) for a in data.angle.values]
    return meta


def read_xrfsr(path: str | Sequence[str]) -> list[LayerData]:
    """Layers of an xrfsr_dask store or OME-Zarr export: one image layer per element, lazy, in nm.

    Parameters
    ----------
    path
        Path of the store (or a one-item list of it, as napari passes).

    Returns
    -------
    list of (data, kwargs, "image")
        One napari layer-data tuple whose ``channel_axis`` 0 splits it into
        one layer per element: ``data`` is a list of dask arrays (finest
        level first) for an OME-Zarr export, one dask array for a store.
    """
    if not isinstance(path, str):
        path = path[0]
    marker = _marker(str(path))
    if marker is not None and marker.get("format") == FORMAT:
        pyramid = open_pyramid(str(path))
        base = pyramid[0]
        if marker["layout"]["downsample"] == "sum":
            layers = [level.data / np.float32(_bin_area(level, base)) for level in pyramid]
        else:
            layers = [level.data for level in pyramid]
        data: Any = layers
        multiscale = True
    else:
        base = open_xrf(str(path))
        data = base.data
        multiscale = False
    scale, translate, labels, units = _placement(base)
    elements = [str(e) for e in base.element.values]
    kwargs: dict[str, Any] = {
        "name": elements,
        "channel_axis": 0,
        "multiscale": multiscale,
        "scale": scale,
        "translate": translate,
        "axis_labels": labels,
        "units": units,
        "colormap": [_COLORMAPS[i % len(_COLORMAPS)] for i in range(len(elements))],
        "blending": "additive",
        "metadata": _metadata(base, str(path)),
    }
    if multiscale:
        attrs: dict[str, Any] = dict(zarr.open_group(str(path), mode="r").attrs)
        windows = [c["window"] for c in attrs["ome"]["omero"]["channels"]]
        kwargs["contrast_limits"] = [[w["start"], w["end"] if w["end"] > w["start"] else w["start"] + 1]
                                     for w in windows]
    return [(data, kwargs, "image")]


def _bin_area(level: xr.DataArray, base: xr.DataArray) -> int:
    """Level-0 pixels (voxels) per pixel of ``level``: the ratio of their spacings."""
    key = "voxel_nm" if kind_of(base) == "volume" else "step_nm"
    return round(float(np.prod(np.divide(level.attrs[key], base.attrs[key]))))
