"""Read beamline files (PyXRF, MAPS, TIFF) into the data model; ingest into zarr.

One file gives element maps ``(element, y, x)``; several files, one per
rotation angle, give a lazy tomography series ``(element, angle, y, x)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import xarray as xr

from xrfsr_dask.errors import IngestError, SourceNotFoundError
from xrfsr_dask.io._scan import (
    Elements,
    NonFinite,
    ScanHeader,
    maps_from_header,
    series_from_headers,
)
from xrfsr_dask.io.hdf5 import open_hdf5
from xrfsr_dask.io.maps import maps_header
from xrfsr_dask.io.pyxrf import pyxrf_header
from xrfsr_dask.io.tiff import tiff_header
from xrfsr_dask.io.writing import WriteSummary, save, write_options

__all__ = ["FORMATS", "Format", "detect_format", "ingest", "read", "read_series"]

Format = Literal["auto", "pyxrf", "maps", "tiff"]
FORMATS: dict[str, Callable[..., ScanHeader]] = {
    "pyxrf": pyxrf_header,
    "maps": maps_header,
    "tiff": tiff_header,
}
_HDF5_ROOTS = {"xrfmap": "pyxrf", "MAPS": "maps"}


def detect_format(path: str | Path) -> str:
    """``"pyxrf"``, ``"maps"`` or ``"tiff"`` from the file's suffix and top-level HDF5 groups."""
    path = Path(path)
    if not path.exists():
        raise SourceNotFoundError(f"input file not found: {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        return "tiff"
    if not h5py.is_hdf5(path):
        raise IngestError(
            f"{path}: not HDF5 and not TIFF; supported inputs are PyXRF HDF5 ('xrfmap/...'), "
            "MAPS HDF5 ('MAPS/...') and multi-page TIFF with a sidecar."
        )
    with open_hdf5(path) as f:
        keys = list(f.keys())
    for root, name in _HDF5_ROOTS.items():
        if root in keys:
            return name
    raise IngestError(
        f"{path}: HDF5 with top-level keys {keys}; expected 'xrfmap' (PyXRF) or 'MAPS' "
        "(MAPS / XRF-Maps). Pass format=... if the layout is one of those under another name."
    )


def _header(path: str | Path, fmt: Format, options: Mapping[str, Any]) -> ScanHeader:
    name = detect_format(path) if fmt == "auto" else fmt
    if name not in FORMATS:
        raise IngestError(f"format={fmt!r}; expected 'auto' or one of {sorted(FORMATS)}.")
    if not Path(path).exists():
        raise SourceNotFoundError(f"input file not found: {path}")
    return FORMATS[name](path, **options)


def read(
    path: str | Path,
    *,
    format: Format = "auto",
    elements: Elements = "lines",
    normalize: str | None = None,
    nonfinite: NonFinite = "raise",
    **reader_options: Any,
) -> xr.DataArray:
    """Read one scan file into ``(element, y, x)`` maps.

    Parameters
    ----------
    path
        A PyXRF or MAPS HDF5 file, or a multi-page TIFF with a sidecar.
    format
        ``"auto"`` detects it from the suffix and the HDF5 top-level group.
    elements
        ``"lines"``: every channel named like an emission line (``Ni_K``),
        leaving out scatter and fit-quality channels; ``"all"``: every
        channel; or a list of channel names.
    normalize
        Name of a scaler (e.g. ``"i0"``) to normalise by: counts are scaled
        to the scaler's mean, ``counts * mean(i0) / i0``; pixels with
        ``i0 <= 0`` become NaN and are reported.
    nonfinite
        ``"raise"`` (default) refuses maps with NaN or inf counts, naming the
        channel and the first pixel; ``"keep"`` keeps them and warns.
    reader_options
        Passed to the format's header reader (e.g. ``position_units`` for
        HDF5, ``sidecar`` for TIFF).

    Returns
    -------
    xarray.DataArray
        In-memory maps with nm coordinates and a provenance record.
    """
    header = _header(path, format, reader_options)
    parameters = {"path": str(path), "format": header.format, "elements": elements,
                  "normalize": normalize, "nonfinite": nonfinite, **reader_options}
    return maps_from_header(
        header, elements=elements, normalize=normalize, nonfinite=nonfinite,
        operation="xrfsr_dask.io.read", parameters=parameters,
    )


def read_series(
    paths: Sequence[str | Path],
    *,
    angles: Sequence[float] | None = None,
    format: Format = "auto",
    elements: Elements = "lines",
    normalize: str | None = None,
    nonfinite: NonFinite = "raise",
    **reader_options: Any,
) -> xr.DataArray:
    """Read one file per rotation angle into a lazy ``(element, angle, y, x)`` series.

    Headers are read now (cheap); the maps are read when computed, one dask
    task per file. Projections keep the order of ``paths``.

    Parameters
    ----------
    paths
        One file per projection.
    angles
        Rotation angle in degrees per file; by default read from each file
        (PyXRF ``param_theta``, MAPS ``theta``, sidecar ``angle_deg``).
    format, elements, normalize, nonfinite, reader_options
        As for :func:`read`.

    Returns
    -------
    xarray.DataArray
        Dask-backed series with per-projection scan origins as the
        ``y_origin``/``x_origin`` coordinates.

    Raises
    ------
    IngestError
        Files whose shapes, steps, channels or scan modes differ (naming the
        first file that differs), or a missing angle.
    """
    headers = [_header(p, format, reader_options) for p in paths]
    parameters = {"paths": [str(p) for p in paths], "angles": angles, "format": format,
                  "elements": elements, "normalize": normalize, "nonfinite": nonfinite, **reader_options}
    return series_from_headers(
        headers, angles=angles, elements=elements, normalize=normalize, nonfinite=nonfinite,
        operation="xrfsr_dask.io.read_series", parameters=parameters,
    )


def ingest(
    sources: str | Path | Sequence[str | Path],
    dst: str,
    *,
    angles: Sequence[float] | None = None,
    format: Format = "auto",
    elements: Elements = "lines",
    normalize: str | None = None,
    nonfinite: NonFinite = "raise",
    chunks: Mapping[str, int] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    **reader_options: Any,
) -> WriteSummary:
    """Convert beamline files into a zarr v3 store (local path or fsspec URL).

    One source (or ``angles`` not given for a single file) gives maps;
    several sources give a series, one file per angle. See :func:`read`,
    :func:`read_series` and :func:`xrfsr_dask.io.save` for the parameters;
    ``overwrite``, ``resume``, ``storage_options`` and ``progress`` are the
    writer options (:class:`~xrfsr_dask.io.WriteOptions`), named here because
    the remaining keywords go to the reader.

    Examples
    --------
    >>> ingest(["scan_000.h5", "scan_001.h5"], "s3://bucket/particle.zarr",
    ...        storage_options={"endpoint_url": "http://127.0.0.1:9000"})  # doctest: +SKIP
    """
    paths = [sources] if isinstance(sources, str | Path) else list(sources)
    options = {"format": format, "elements": elements, "normalize": normalize, "nonfinite": nonfinite,
               **reader_options}
    if len(paths) == 1 and angles is None:
        data = read(paths[0], **options)
    else:
        data = read_series(paths, angles=angles, **options)
    write = write_options("ingest", {"overwrite": overwrite, "resume": resume, "storage_options": storage_options,
                                     "progress": progress})
    return save(data, dst, chunks=chunks, **write)
