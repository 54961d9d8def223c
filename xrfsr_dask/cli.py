"""The ``xrfsr`` command line: ``info``, ``ingest``, ``demo``.

Errors of the library (:class:`~xrfsr_dask.errors.XrfsrError`) are printed as
one ``error:`` line on stderr with exit status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from xrfsr_dask.errors import XrfsrError

app = typer.Typer(
    help="Resolution-enhanced scanning XRF microscopy at scale: zarr v3 data, dask, RDN.",
    no_args_is_help=True,
    add_completion=False,
)

StorageOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option", "-o",
        help="fsspec storage option KEY=VALUE, repeatable (e.g. -o endpoint_url=http://127.0.0.1:9000).",
    ),
]


def _value(text: str) -> Any:
    """``true``/``false``, numbers, else the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _pairs(items: list[str] | None, option: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        out[key.strip()] = _value(value.strip())
    return out


def _chunks(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    chunks = _pairs(text.split(","), "--chunks")
    bad = {k: v for k, v in chunks.items() if not isinstance(v, int)}
    if bad:
        raise typer.BadParameter(f"chunk sizes must be integers; got {bad}", param_hint="--chunks")
    return chunks


def _run(func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except XrfsrError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def _print_info(info: dict[str, Any]) -> None:
    typer.echo(f"{info['url']}")
    typer.echo(f"  status    {info['status']}")
    typer.echo(f"  layout    {info['kind']} {tuple(info['dims'])} shape {tuple(info['shape'])} {info['dtype']}")
    typer.echo(f"  chunks    {tuple(info['chunks'])}")
    spacing = ", ".join(f"{d} {v:g} nm" for d, v in info["spacing_nm"].items())
    extent = ", ".join(f"{d} {v / 1000:g} µm" for d, v in info["extent_nm"].items())
    typer.echo(f"  spacing   {spacing}")
    typer.echo(f"  extent    {extent}")
    if "angles_deg" in info:
        a = info["angles_deg"]
        typer.echo(f"  angles    {a['count']} from {a['min']:g} to {a['max']:g} deg")
    names = []
    for e in info["elements"]:
        energy = f" {e['energy_kev']:.3f} keV" if e.get("energy_kev") else ""
        names.append(f"{e['name']}{energy}")
    typer.echo(f"  elements  {', '.join(names)}")
    scan = {k: info[k] for k in ("scan_mode", "fast_axis", "probe_fwhm_nm", "dwell_s") if k in info}
    if scan:
        typer.echo("  scan      " + ", ".join(f"{k}={v}" for k, v in scan.items()))
    typer.echo(f"  units     {info['units']}")
    typer.echo(f"  history   {' -> '.join(info['provenance'])}")


@app.command()
def info(
    url: Annotated[str, typer.Argument(help="Store path or URL (s3://, file://, memory://).")],
    storage_option: StorageOptions = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Describe a store: layout, chunks, elements, physical sizes, completeness."""
    from xrfsr_dask.io import describe

    result = _run(describe, url, storage_options=_pairs(storage_option, "--storage-option"))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_info(result)


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Input files, then the destination store: SRC... DST.")],
    format: Annotated[str, typer.Option(help="auto, pyxrf, maps or tiff.")] = "auto",
    elements: Annotated[str, typer.Option(help="'lines', 'all' or names, e.g. Ni_K,Co_K.")] = "lines",
    angles: Annotated[str | None, typer.Option(help="Angles in degrees, one per file: 0,3,6,...")] = None,
    normalize: Annotated[str | None, typer.Option(help="Scaler to normalise by, e.g. i0.")] = None,
    keep_nonfinite: Annotated[bool, typer.Option(help="Keep NaN/inf counts (warn) instead of refusing.")] = False,
    position_units: Annotated[str | None, typer.Option(help="Units of HDF5 positions: nm, um, mm.")] = None,
    theta_pv: Annotated[str | None, typer.Option(help="MAPS: EPICS PV holding the angle.")] = None,
    chunks: Annotated[str | None, typer.Option(help="Storage chunks, e.g. y=256,x=256.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing destination.")] = False,
    resume: Annotated[bool, typer.Option(help="Finish an interrupted ingest into DST.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    storage_option: StorageOptions = None,
) -> None:
    """Convert PyXRF / MAPS HDF5 or TIFF files into a zarr v3 store (one file per angle for a series)."""
    from xrfsr_dask.io import ingest as run_ingest

    if len(paths) < 2:
        raise typer.BadParameter("give at least one input file and a destination", param_hint="PATHS")
    *sources, dst = paths
    reader_options: dict[str, Any] = {}
    if position_units is not None:
        reader_options["position_units"] = position_units
    if theta_pv is not None:
        reader_options["theta_pv"] = theta_pv
    selection: Any = elements if elements in ("lines", "all") else [e.strip() for e in elements.split(",")]
    angle_values = [float(a) for a in angles.split(",")] if angles else None
    summary = _run(
        run_ingest, sources, dst, format=format, elements=selection, angles=angle_values, normalize=normalize,
        nonfinite="keep" if keep_nonfinite else "raise", chunks=_chunks(chunks), overwrite=overwrite,
        resume=resume, storage_options=_pairs(storage_option, "--storage-option"), progress=progress,
        **reader_options,
    )
    typer.echo(
        f"{summary.url}: {summary.chunks_written} chunks written, {summary.chunks_skipped} already present, "
        f"{summary.chunks_total} in all; complete."
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's files and stores.")] = Path("demo-output"),
    size: Annotated[int, typer.Option(help="Map size in pixels (square).")] = 96,
    angles: Annotated[int, typer.Option(help="Number of projections.")] = 36,
    overwrite: Annotated[bool, typer.Option(help="Replace earlier demo output in OUT.")] = False,
) -> None:
    """Make a synthetic PyXRF tomography series, ingest it into zarr v3, and describe the store."""
    from xrfsr_dask.demo import run_demo

    info_dict = _run(run_demo, out, size=size, n_angles=angles, overwrite=overwrite)
    _print_info(info_dict)


def main() -> None:
    """Entry point for ``python -m xrfsr_dask``."""
    app()
