"""The ``xrfsr`` command line.

Commands: ``info``, ``verify``, ``unlock``, ``ingest``, ``export``, ``phantom``, ``simulate``, ``probe``, ``fsc``,
``train``, ``adapt``, ``enhance``, ``check``, ``reconstruct``, ``demo``.

Errors of the library (:class:`~xrfsr_dask.errors.XrfsrError`) and invalid
values it refuses (:class:`ValueError`, whose messages name the argument and
the fix) are printed as one ``error:`` line on stderr with exit status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import itertools
import json
import math
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
Device = Annotated[str, typer.Option(help="Where it runs: auto, cpu, cuda or cuda:N (N the GPU index).")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing destination.")]
Resume = Annotated[bool, typer.Option(help="Finish an interrupted write into DST: only missing chunks are computed.")]
Progress = Annotated[bool, typer.Option(help="Show a progress bar.")]


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


def _write_options(overwrite: bool, resume: bool, progress: bool, storage_option: list[str] | None) -> dict[str, Any]:
    """The writer options (:class:`xrfsr_dask.io.WriteOptions`) of a command, from its shared flags."""
    return {"overwrite": overwrite, "resume": resume, "progress": progress,
            "storage_options": _pairs(storage_option, "--storage-option")}


def _chunks(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    chunks = _pairs(text.split(","), "--chunks")
    bad = {k: v for k, v in chunks.items() if not isinstance(v, int)}
    if bad:
        raise typer.BadParameter(f"chunk sizes must be integers; got {bad}", param_hint="--chunks")
    return chunks


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas; got {text!r}", param_hint=option) from None


def _threshold(text: str) -> float | str:
    """A named FSC threshold, or a fixed one given as a number."""
    try:
        return float(text)
    except ValueError:
        return text


def _center(text: str) -> float | str | None:
    if text in ("middle", "find"):
        return None if text == "middle" else text
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(
            f"expected pixels (e.g. 127.5), 'middle' or 'find'; got {text!r}", param_hint="--center"
        ) from None


def _run(func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except (XrfsrError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def _default_model(src: str, options: dict[str, Any]) -> tuple[str, str]:
    """``(bundled model, kind)``: the default model for the kind of data (maps or series) the store holds."""
    from xrfsr_dask.io.store import open_xrf
    from xrfsr_dask.model import DEFAULT_MODELS
    from xrfsr_dask.schema import kind_of

    kind = kind_of(_run(open_xrf, src, storage_options=options))
    return DEFAULT_MODELS.get(kind, DEFAULT_MODELS["maps"]), kind  # a volume is refused by the command itself


def _write_on_cluster(cluster: str, func: Any, *args: Any, **kwargs: Any) -> None:
    """Run a store-to-store writer here (``none``), on a new ``local`` cluster or at an address; report it."""
    client = None
    if cluster != "none":
        from xrfsr_dask.cluster import get_client

        client = get_client(address=None if cluster == "local" else cluster)
        typer.echo(f"dask cluster: {client.dashboard_link}")
    try:
        summary = _run(func, *args, **kwargs)
    finally:
        if client is not None and cluster == "local":
            client.close()
            client.cluster.close()
    typer.echo(
        f"{summary.url}: {summary.chunks_written} chunks written, {summary.chunks_skipped} already present; complete."
    )


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
    """Describe a store (layout, chunks, elements, physical sizes, completeness) or an OME-Zarr export's levels."""
    from xrfsr_dask.io import describe, describe_pyramid, store_status
    from xrfsr_dask.io.ome import FORMAT

    options = _pairs(storage_option, "--storage-option")
    pyramid = _run(store_status, url, storage_options=options).format == FORMAT
    result = _run(describe_pyramid if pyramid else describe, url, storage_options=options)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    elif pyramid:
        _print_pyramid(result)
    else:
        _print_info(result)


def _print_pyramid(info: dict[str, Any]) -> None:
    typer.echo(f"{info['url']}")
    typer.echo(f"  format    {info['format']}, {info['downsample']} of the level-0 pixels per bin")
    typer.echo(f"  status    {info['status']}")
    typer.echo(f"  layout    {info['kind']} {tuple(info['dims'])}")
    typer.echo(f"  elements  {', '.join(info['elements'])}")
    for level in info["levels"]:
        spacing = " x ".join(f"{v:g}" for v in level["spacing_nm"].values())
        shards = f", shards {tuple(level['shards'])}" if level["shards"] else ""
        typer.echo(f"  level {level['level']:<3} shape {tuple(level['shape'])}, {spacing} nm, "
                   f"chunks {tuple(level['chunks'])}{shards}")
    typer.echo(f"  history   {' -> '.join(info['provenance'])}")


@app.command()
def verify(
    url: Annotated[str, typer.Argument(help="Store path or URL (s3://, file://, memory://).")],
    repair: Annotated[bool, typer.Option(help="Delete corrupt chunks and mark the store incomplete, "
                                               "so that --resume rewrites them.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    storage_option: StorageOptions = None,
) -> None:
    """Read every chunk of a store, check its checksum, and name corrupt or missing chunks (exit code 1)."""
    from xrfsr_dask.io import verify as run_verify

    report = _run(run_verify, url, storage_options=_pairs(storage_option, "--storage-option"), repair=repair,
                  progress=progress)
    typer.echo(report.describe())
    if report.repaired:
        typer.echo("re-run the command that wrote the store with --resume to rewrite the removed chunks")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def unlock(
    url: Annotated[str, typer.Argument(help="Store path or URL whose writer was killed on another machine.")],
    storage_option: StorageOptions = None,
) -> None:
    """Remove the writer marker of a store whose writing job is gone, so that --resume can run."""
    from xrfsr_dask.io import unlock as run_unlock

    holder = _run(run_unlock, url, storage_options=_pairs(storage_option, "--storage-option"))
    if holder is None:
        typer.echo(f"{url}: no writer marker")
    else:
        typer.echo(f"{url}: removed the marker of process {holder.get('pid')} on {holder.get('host')} "
                   f"(started {holder.get('started')}); resume the write with --resume")


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
    overwrite: Overwrite = False,
    resume: Resume = False,
    progress: Progress = True,
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
        nonfinite="keep" if keep_nonfinite else "raise", chunks=_chunks(chunks),
        **_write_options(overwrite, resume, progress, storage_option), **reader_options,
    )
    typer.echo(
        f"{summary.url}: {summary.chunks_written} chunks written, {summary.chunks_skipped} already present, "
        f"{summary.chunks_total} in all; complete."
    )


@app.command()
def export(
    src: Annotated[str, typer.Argument(help="Store to export (path or URL).")],
    dst: Annotated[str, typer.Argument(help="Destination, e.g. particle.ome.zarr or s3://bucket/particle.ome.zarr.")],
    format: Annotated[str, typer.Option(help="Output format: ome-zarr (NGFF 0.5 multiscale image).")] = "ome-zarr",
    levels: Annotated[int | None, typer.Option(
        help="Pyramid levels, level 0 included (default: until the coarsest fits one chunk).")] = None,
    chunks: Annotated[str | None, typer.Option(help="Chunks, e.g. y=256,x=256.")] = None,
    shards: Annotated[str | None, typer.Option(
        help="Shards (whole numbers of chunks), e.g. y=2048,x=2048: fewer, larger objects for S3.")] = None,
    downsample: Annotated[str, typer.Option(
        help="sum (counts per bin) or mean (counts per level-0 pixel).")] = "sum",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing destination.")] = False,
    resume: Annotated[bool, typer.Option(help="Finish an interrupted export into DST.")] = False,
    cluster: Annotated[str, typer.Option(help="none (threads here), local (new cluster) or an address.")] = "none",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    storage_option: StorageOptions = None,
) -> None:
    """Export a store as an OME-Zarr (NGFF 0.5) multiscale image for napari, neuroglancer or vizarr."""
    from xrfsr_dask.io import open_xrf, to_ome_zarr

    if format != "ome-zarr":
        raise typer.BadParameter(f"unknown format {format!r}; the export format is ome-zarr",
                                 param_hint="--format")
    options = _pairs(storage_option, "--storage-option")
    data = _run(open_xrf, src, storage_options=options)
    _write_on_cluster(cluster, to_ome_zarr, data, dst, levels=levels, chunks=_chunks(chunks),
                      shards=_chunks(shards), downsample=downsample, overwrite=overwrite, resume=resume,
                      storage_options=options, progress=progress)


@app.command()
def phantom(
    dst: Annotated[str, typer.Argument(help="Destination store path or URL.")],
    size: Annotated[int, typer.Option(help="Map size in pixels (square).")] = 512,
    pixel_nm: Annotated[float, typer.Option(help="Pixel size in nm.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Random seed of the particle.")] = 0,
    chunks: Annotated[str | None, typer.Option(help="Storage chunks, e.g. y=256,x=256.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing destination.")] = False,
    storage_option: StorageOptions = None,
) -> None:
    """Write a seeded synthetic NMC particle (Ni, Co, Mn, Mo maps) as a high-resolution store."""
    from xrfsr_dask.io import save
    from xrfsr_dask.phantoms import nmc_particle

    maps = _run(nmc_particle, (size, size), pixel_nm=pixel_nm, seed=seed)
    summary = _run(save, maps, dst, chunks=_chunks(chunks), overwrite=overwrite,
                   storage_options=_pairs(storage_option, "--storage-option"), progress=False)
    typer.echo(f"{summary.url}: NMC phantom {size} x {size} px at {pixel_nm:g} nm, seed {seed}; complete.")


@app.command()
def simulate(
    src: Annotated[str, typer.Argument(help="High-resolution maps or series (store path or URL).")],
    dst: Annotated[str, typer.Argument(help="Destination store for the simulated low-resolution scan.")],
    step_nm: Annotated[str, typer.Option(help="Scan step in nm: one number or y,x.")] = "50",
    probe_nm: Annotated[str, typer.Option(help="Probe FWHM in nm: one number or major,minor.")] = "60",
    probe_angle: Annotated[float, typer.Option(help="Direction of the probe's major axis, deg from +x.")] = 0.0,
    mode: Annotated[str, typer.Option(help="Scan mode: step or fly.")] = "fly",
    fast_axis: Annotated[str, typer.Option(help="Fast axis of a fly scan: x or y.")] = "x",
    jitter_nm: Annotated[float, typer.Option(help="Position jitter (standard deviation) in nm.")] = 0.0,
    scale: Annotated[float, typer.Option(help="Multiplies the expected counts (flux x dwell).")] = 1.0,
    noise: Annotated[bool, typer.Option(help="Add Poisson counting noise.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of jitter and noise.")] = 0,
    dwell_s: Annotated[float | None, typer.Option(help="Dwell time per pixel to record, s.")] = None,
    chunks: Annotated[str | None, typer.Option(help="Storage chunks, e.g. y=256,x=256.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing destination.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    storage_option: StorageOptions = None,
) -> None:
    """Simulate the low-resolution step or fly scan of high-resolution maps, chunk by chunk."""
    from xrfsr_dask.io import open_xrf, save
    from xrfsr_dask.probe import GaussianProbe
    from xrfsr_dask.simulate import simulate_scan

    options = _pairs(storage_option, "--storage-option")
    hr = _run(open_xrf, src, storage_options=options)
    fwhm = _floats(probe_nm, "--probe-nm")
    probe = _run(GaussianProbe, fwhm[0] if len(fwhm) == 1 else fwhm, probe_angle)
    lr = _run(simulate_scan, hr, step_nm=_floats(step_nm, "--step-nm"), probe=probe, scan_mode=mode,
              fast_axis=fast_axis, jitter_nm=jitter_nm, scale=scale, noise=noise, dwell_s=dwell_s, seed=seed)
    summary = _run(save, lr, dst, chunks=_chunks(chunks), overwrite=overwrite, storage_options=options,
                   progress=progress)
    typer.echo(
        f"{summary.url}: {mode} scan, step {lr.attrs['step_nm'][1]:g} nm, probe {lr.attrs['probe_fwhm_nm']:.1f} nm, "
        f"shape {tuple(lr.shape)}; complete."
    )


def _probe_images(path: str, pixel_nm: str | None, options: dict[str, Any]) -> Any:
    """A probe image file as a DataArray (zarr store) or array plus pixel size."""
    import numpy as np
    import tifffile

    suffix = Path(path).suffix.lower()
    if suffix in (".npy", ".tif", ".tiff"):
        if pixel_nm is None:
            raise typer.BadParameter(f"{path} has no pixel size; pass --pixel-nm", param_hint="--pixel-nm")
        if not Path(path).exists():
            raise typer.BadParameter(f"no such file: {path}", param_hint="FILE")
        data = np.load(path) if suffix == ".npy" else tifffile.imread(path)
        pixels = _floats(pixel_nm, "--pixel-nm")
        return data, pixels[0] if len(pixels) == 1 else pixels
    from xrfsr_dask.io import open_xrf

    return _run(open_xrf, path, storage_options=options), None


@app.command()
def probe(
    file: Annotated[str, typer.Argument(help="Probe image(s): .npy, .tif or a zarr store of maps.")],
    pixel_nm: Annotated[str | None, typer.Option(help="Pixel size in nm (y,x or one number) for .npy/.tif.")] = None,
    line: Annotated[str | None, typer.Option(help="Fit 1-D line scans instead: gaussian or knife-edge.")] = None,
    step_nm: Annotated[float | None, typer.Option(help="Also print sqrt(FWHM^2 + step^2) for this step.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    storage_option: StorageOptions = None,
) -> None:
    """Fit a Gaussian probe to an image (or line scans) and print its FWHM in nm."""
    from xrfsr_dask.probe import combined_resolution_nm, fit_line, fit_probe

    data, pixels = _probe_images(file, pixel_nm, _pairs(storage_option, "--storage-option"))
    if line is None:
        fit = _run(fit_probe, data, pixel_nm=pixels)
        columns = ["fwhm_major_nm", "fwhm_minor_nm", "fwhm_nm", "angle_deg", "center_y_nm", "center_x_nm"]
    else:
        fit = _run(fit_line, data, kind=line, pixel_nm=pixels)
        columns = ["fwhm_nm", "center_nm"]
    table = fit[[*columns, "reason"]].to_dataframe().reset_index() if fit["fwhm_nm"].ndim else None
    rows = table.to_dict("records") if table is not None else [{c: fit[c].item() for c in [*columns, "reason"]}]
    for row in rows:
        if step_nm is not None and row["fwhm_nm"] == row["fwhm_nm"]:
            row["combined_nm"] = combined_resolution_nm(row["fwhm_nm"], step_nm)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        label = " ".join(f"{k}={row[k]}" for k in fit["fwhm_nm"].dims)
        if row["reason"] != "converged":
            typer.echo(f"{label or 'probe'}: not fitted ({row['reason']})")
            continue
        if line is None:
            text = (f"FWHM {row['fwhm_major_nm']:.1f} x {row['fwhm_minor_nm']:.1f} nm "
                    f"(major x minor, {row['angle_deg']:.1f} deg), equivalent {row['fwhm_nm']:.1f} nm, "
                    f"centre ({row['center_y_nm']:.1f}, {row['center_x_nm']:.1f}) nm")
        else:
            text = f"FWHM {row['fwhm_nm']:.1f} nm at {row['center_nm']:.1f} nm"
        if "combined_nm" in row:
            text += f"; with a {step_nm:g} nm step: {row['combined_nm']:.1f} nm"
        typer.echo(f"{label + ': ' if label else ''}{text}")


@app.command()
def fsc(
    first: Annotated[str, typer.Argument(help="First store (maps or volume), path or URL.")],
    second: Annotated[str, typer.Argument(help="Second, independent store on the same grid.")],
    element: Annotated[str | None, typer.Option(help="Elements to compare, e.g. Ni_K,Co_K (default all).")] = None,
    threshold: Annotated[str, typer.Option(
        help="Threshold curves: half-bit,one-bit,1/7,3-sigma, or fixed numbers in (0, 1).",
    )] = "half-bit,one-bit,1/7,3-sigma",
    shell_width: Annotated[float, typer.Option(help="Shell width in frequency steps.")] = 1.0,
    window: Annotated[str | None, typer.Option(help="Apodisation window, e.g. hann (default none).")] = None,
    figure: Annotated[Path | None, typer.Option(
        help="Where to write the figure (PNG, PDF or SVG); default fsc.png, or fsc-2.png, ... if it exists.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing figure file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    storage_option: StorageOptions = None,
) -> None:
    """Resolution from two independent datasets: FSC of volumes, FRC of maps; prints crossings in nm.

    Resolutions are printed as half periods 1/(2f) at the crossing frequency f (the X-ray microscopy
    convention, Wu et al.'s), full periods 1/f beside them. Warns on stderr when both datasets were
    enhanced: their crossing then measures reproducibility, not resolution.
    """
    import warnings

    from xrfsr_dask.errors import EnhancedFSCWarning
    from xrfsr_dask.io import open_xrf
    from xrfsr_dask.metrics import frc as run_frc
    from xrfsr_dask.metrics import fsc as run_fsc
    from xrfsr_dask.plot import plot_fsc

    if figure is None:
        candidates = (Path("fsc.png" if k == 1 else f"fsc-{k}.png") for k in itertools.count(1))
        figure = next(p for p in candidates if not p.exists())
    elif figure.exists() and not overwrite:
        typer.echo(f"error: --figure {figure} exists; pass --overwrite to replace it, or another --figure.", err=True)
        raise typer.Exit(2)
    options = _pairs(storage_option, "--storage-option")
    a, b = (_run(open_xrf, url, storage_options=options) for url in (first, second))
    if element:
        names = [e.strip() for e in element.split(",")]
        unknown = [e for e in names if e not in list(a.element.values)]
        if unknown:
            raise typer.BadParameter(
                f"{unknown} not in {first} (it has {list(a.element.values)})", param_hint="--element"
            )
        a, b = a.sel(element=names), b.sel(element=names)
    run = run_fsc if "z" in a.dims else run_frc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EnhancedFSCWarning)
        result = _run(
            run, a, b, shell_width=shell_width, window=window,
            thresholds=[_threshold(t.strip()) for t in threshold.split(",")],
        )
    notes = []
    for w in caught:
        if issubclass(w.category, EnhancedFSCWarning):
            notes.append(f"a = {first}, b = {second}: {w.message}")
            typer.echo(f"warning: {notes[-1]}", err=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_fsc(result, title=f"{result.attrs['kind'].upper()}: {first} vs {second}").savefig(figure, dpi=150)
    names = ["crossing_frequency", "resolution_half_period_nm", "resolution_full_period_nm"]
    table = result[names].to_dataframe().reset_index()
    bound = 1.0 / (2.0 * float(result.frequency.max()))  # a curve never crossed: finer than the last shell
    rows = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in table.to_dict("records")
    ]
    if as_json:
        typer.echo(json.dumps({
            "kind": result.attrs["kind"], "figure": str(figure),
            "convention": "crossing_frequency f in 1/nm; resolution_half_period_nm = 1/(2f), "
                          "resolution_full_period_nm = 1/f, in nm",
            "crossings": rows, "not_crossed_bound_half_period_nm": bound, "warnings": notes,
        }, indent=2))
        return
    batch = [d for d in result.crossing_frequency.dims if d != "threshold"]
    typer.echo(f"{result.attrs['kind'].upper()} of {first} and {second}; pixel {result.attrs['spacing_nm']} nm")
    typer.echo("resolution as half period 1/(2f) at the crossing frequency f (full period 1/f beside it):")
    for key, group in table.groupby(batch, sort=False) if batch else [((), table)]:
        label = " ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        parts = [
            f"{t} {h:.1f} nm (full period {f:.1f} nm)" if not math.isnan(h)
            else f"{t} not crossed (≤ {bound:.1f} nm, the Nyquist limit)"
            for t, h, f in zip(group["threshold"], group["resolution_half_period_nm"],
                               group["resolution_full_period_nm"], strict=True)
        ]
        typer.echo(f"  {label or 'map'}: " + ", ".join(parts))
    typer.echo(f"figure: {figure}")


@app.command()
def train(
    out: Annotated[Path, typer.Argument(help="Folder of the run: settings, checkpoint, log.csv, final model.")],
    preset: Annotated[str, typer.Option(help="Architecture: small, medium, paper or tiny.")] = "small",
    scale: Annotated[int, typer.Option(help="Output grid refinement: 1, 2, 3 or 4.")] = 2,
    epochs: Annotated[int, typer.Option(help="Number of epochs.")] = 40,
    steps_per_epoch: Annotated[int, typer.Option(help="Adam steps per epoch.")] = 50,
    batch_size: Annotated[int, typer.Option(help="Patches per step.")] = 16,
    learning_rate: Annotated[float, typer.Option(help="Initial Adam step size (cosine-annealed to 1e-5).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seeds the initial weights and the data of every epoch.")] = 0,
    train_phantoms: Annotated[int, typer.Option(help="Training phantoms (seeds) of each family.")] = 24,
    validation_phantoms: Annotated[int, typer.Option(help="Validation phantoms of each family.")] = 4,
    test_phantoms: Annotated[int, typer.Option(help="Test phantoms of each family.")] = 4,
    patch: Annotated[int, typer.Option(help="LR pixels per side of a training patch.")] = 32,
    sample: Annotated[str, typer.Option(
        help="maps, projections (through thick samples, for tomography series) or mixed (one model for both).",
    )] = "maps",
    families: Annotated[str | None, typer.Option(
        help="Structure families and weights, e.g. nmc=3,cell=1,targets=1; default: every family but the held-out "
             "ones (xrfsr_dask.families.HELD_OUT), weight 1.")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the model files (default rdn-PRESET-xSCALE).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a run found in OUT (same settings).")] = True,
    device: Device = "auto",
) -> None:
    """Train an RDN on scans simulated on the fly from structure families; resumable."""
    from xrfsr_dask.model import DataSettings, TrainSettings
    from xrfsr_dask.model import train as run_train

    chosen = {}
    if families is not None:
        for item in families.split(","):
            family, sep, weight = item.partition("=")
            try:
                chosen[family.strip()] = float(weight) if sep else 1.0
            except ValueError:
                raise typer.BadParameter(f"expected NAME or NAME=WEIGHT, got {item!r}",
                                         param_hint="--families") from None
    data = _run(DataSettings, scale=scale, train_seeds=train_phantoms, validation_seeds=validation_phantoms,
                test_seeds=test_phantoms, patch=patch, sample=sample,
                **({"families": tuple(chosen.items())} if chosen else {}))
    settings = _run(
        TrainSettings, preset=preset, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
        learning_rate=learning_rate, seed=seed, data=data,
    )
    model = _run(run_train, out, settings, name=name, resume=resume, device=device)
    test = model.card["metrics"]["test"]
    typer.echo(
        f"{model.card['name']}: {model.n_parameters} parameters, test PSNR {test['psnr_db']:.2f} dB "
        f"(bicubic {test['bicubic_psnr_db']:.2f} dB), L1 {test['l1']:.4f}"
    )
    typer.echo(f"model: {out / model.card['name']}.safetensors")


@app.command()
def adapt(
    src: Annotated[str, typer.Argument(help="Your measured LR maps or series (store path or URL).")],
    out: Annotated[str, typer.Argument(help="Path of the adapted model (.safetensors; the .json card beside it).")],
    model: Annotated[str | None, typer.Option(
        help="Model to start from: bundled name or .safetensors path/URL; default: the bundled model for the "
             "data's kind.")] = None,
    probe_fwhm: Annotated[str | None, typer.Option(
        help="Probe FWHM in nm, one number or major,minor; default: the store's probe_fwhm_nm.")] = None,
    epochs: Annotated[int, typer.Option(help="Number of epochs (fresh Poisson noise each).")] = 5,
    steps_per_epoch: Annotated[int, typer.Option(help="Adam steps per epoch.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Patches per step.")] = 16,
    learning_rate: Annotated[float, typer.Option(help="Adam step size (cosine-annealed to a tenth).")] = 1e-4,
    patch: Annotated[int, typer.Option(help="Input pixels per side of a patch, at scale x the step.")] = 16,
    seed: Annotated[int, typer.Option(help="Seeds the noise and the patches.")] = 0,
    name: Annotated[str | None, typer.Option(help="Name in the card (default: BASE-adapted).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model at OUT.")] = False,
    device: Device = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    storage_option: StorageOptions = None,
) -> None:
    """Fine-tune a model on your own LR maps: each map is the target of its own scan simulated at scale x the step."""
    from xrfsr_dask.model.adapt import adapt as run_adapt

    options = _pairs(storage_option, "--storage-option")
    if model is None:
        model, _ = _default_model(src, options)
    fwhm = None if probe_fwhm is None else _floats(probe_fwhm, "--probe-fwhm")
    net = _run(run_adapt, model, src, probe=None if fwhm is None else fwhm[0] if len(fwhm) == 1 else fwhm,
               epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, learning_rate=learning_rate,
               patch=patch, seed=seed, out=out, name=name, overwrite=overwrite, device=device,
               storage_options=options, progress=progress)
    record = net.card["adaptation"]
    loss = record["loss"]
    typer.echo(
        f"{net.card['name']} (from {record['base_model']['name']}): self-supervised L1 {loss['before']:.4f} -> "
        f"{loss['after']:.4f} (bicubic {loss['bicubic']:.4f}) in {record['seconds']:.0f} s"
    )
    typer.echo(f"model: {out if out.endswith('.safetensors') else out + '.safetensors'}")


@app.command()
def enhance(
    src: Annotated[str, typer.Argument(help="LR maps or series store (path or URL).")],
    dst: Annotated[str, typer.Argument(help="Destination store for the enhanced data.")],
    model: Annotated[str | None, typer.Option(
        help="Bundled model name or .safetensors path/URL; default: the bundled model for the data's kind "
             "(rdn-small-x2 for maps and for series).")] = None,
    halo: Annotated[int, typer.Option(help="LR pixels of overlap around each chunk and tile.")] = 16,
    tile: Annotated[int, typer.Option(help="Largest tile core in LR pixels inside a chunk.")] = 512,
    batch_size: Annotated[int, typer.Option(help="Tiles per network call.")] = 8,
    device: Device = "auto",
    cluster: Annotated[str, typer.Option(help="none (threads here), local (new cluster) or an address.")] = "none",
    resume: Resume = False,
    refine: Annotated[str, typer.Option(
        help="Poisson-likelihood refinement after the network: iterations (0: none) or 'auto' (stop each map "
             "where its deviance meets what Poisson noise alone gives).")] = "0",
    refine_weight: Annotated[float, typer.Option(
        help="How strongly refinement stays near the network's output.")] = 1.0,
    check: Annotated[bool, typer.Option(
        help="Also write the consistency check beside DST (DST.consistency.zarr).")] = False,
    overwrite: Overwrite = False,
    progress: Progress = True,
    storage_option: StorageOptions = None,
) -> None:
    """Enhance every map of a store with an RDN, chunk by chunk with halos, into a new store."""
    from xrfsr_dask.enhance import enhance_to_zarr

    write = _write_options(overwrite, resume, progress, storage_option)
    if model:
        typer.echo(f"model: {model} (given)")
    else:
        default, kind = _default_model(src, write["storage_options"])
        typer.echo(f"model: {default} (the default for {kind})")
    _write_on_cluster(cluster, enhance_to_zarr, src, dst, model, halo=halo, tile=tile, batch_size=batch_size,
                      device=device, refine=_refine_option(refine), refine_weight=refine_weight, check=check,
                      **write)


def _refine_option(text: str) -> int | str:
    """``--refine``: ``auto`` or a whole number of iterations."""
    if text == "auto":
        return text
    if not text.isdigit():
        raise typer.BadParameter(f"{text!r} is neither a whole number of iterations (0: none) nor 'auto'.",
                                 param_hint="--refine")
    return int(text)


def _check_line(label: str, row: dict[str, Any], tolerance: float) -> str:
    """One map's line of ``xrfsr check``."""
    text = (f"  {label}: mean deviance {row['mean_deviance']:.3f} per scan pixel (Poisson noise alone: "
            f"{row['expected_mean_deviance']:.3f}, excess {row['excess_deviance']:+.3f}), count ratio "
            f"{row['count_ratio']:.4f} (forward-projected / measured counts), total-count ratio "
            f"{row['total_count_ratio']:.4f} (mean counts per scan point, enhanced / measured)")
    if row["excess_deviance"] < -tolerance:
        text += "; below the noise: the map reproduces the measurement's noise"
    return text + ("" if row["consistent"] else "  <- NOT consistent")


@app.command()
def check(
    enhanced: Annotated[str, typer.Argument(help="Enhanced maps or series store (path or URL).")],
    measured: Annotated[str, typer.Argument(help="The measured (LR) store it was enhanced from.")],
    probe_fwhm: Annotated[str | None, typer.Option(
        help="Probe FWHM in nm (one number or major,minor); default: the measured store's probe_fwhm_nm.")] = None,
    max_excess: Annotated[float | None, typer.Option(
        help="Verdict: mean deviance per scan pixel beyond Poisson noise's at most this [default: 0.5].")] = None,
    count_tolerance: Annotated[float | None, typer.Option(
        help="Verdict: forward-projected counts within this fraction of the measured [default: 0.02].")] = None,
    out: Annotated[str | None, typer.Option(
        help="Also write the check (deviance maps, summaries) to this store.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out store.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    storage_option: StorageOptions = None,
) -> None:
    """Check an enhanced store against the measured counts: Poisson deviance and counts per map.

    Exit code 1 when a map is not consistent.
    """
    from xrfsr_dask.consistency import COUNT_TOLERANCE, EXCESS_TOLERANCE, consistency, consistency_to_zarr
    from xrfsr_dask.io import open_xrf

    options = _pairs(storage_option, "--storage-option")
    fwhm = _floats(probe_fwhm, "--probe-fwhm") if probe_fwhm else None
    probe = None if fwhm is None else fwhm[0] if len(fwhm) == 1 else fwhm
    max_excess = EXCESS_TOLERANCE if max_excess is None else max_excess
    count_tolerance = COUNT_TOLERANCE if count_tolerance is None else count_tolerance
    tolerances = {"excess_tolerance": max_excess, "count_tolerance": count_tolerance}
    if out:
        result = _run(consistency_to_zarr, enhanced, measured, out, probe=probe, overwrite=overwrite,
                      storage_options=options, **tolerances)
    else:
        hr, lr = (_run(open_xrf, url, storage_options=options) for url in (enhanced, measured))
        result = _run(consistency, hr, lr, probe=probe, **tolerances)
    names = ["mean_deviance", "expected_mean_deviance", "excess_deviance", "count_ratio", "total_count_ratio",
             "pixels", "consistent"]
    table = result[names].compute().to_dataframe().reset_index()
    rows = table[[c for c in table.columns if c not in ("line", "energy_kev")]].to_dict("records")
    ok = bool(table["consistent"].all())
    attrs = result.attrs
    if as_json:
        typer.echo(json.dumps({"enhanced": enhanced, "measured": measured, "consistent": ok, "maps": rows,
                               "probe_fwhm_nm": attrs["probe_fwhm_nm"], "step_nm": attrs["step_nm"],
                               "ratio": attrs["ratio"], "scan_mode": attrs["scan_mode"], **tolerances},
                              indent=2, default=str))
    else:
        major, minor = attrs["probe_fwhm_nm"]
        typer.echo(f"{enhanced} against {measured}: {attrs['scan_mode']} scan, step {attrs['step_nm'][0]:g} x "
                   f"{attrs['step_nm'][1]:g} nm, probe {major:.1f} x {minor:.1f} nm FWHM, enhanced grid "
                   f"{attrs['ratio'][0]} x {attrs['ratio'][1]} finer, {int(table['pixels'].max())} scan pixels per map")
        for row in rows:
            label = " ".join(f"{row[d]}" if d == "element" else f"{d} {row[d]:g}" for d in ("element", "angle")
                             if d in row)
            typer.echo(_check_line(label, row, max_excess))
        bad = [str(r["element"]) + (f" angle {r['angle']:g}" if "angle" in r else "")
               for r in rows if not r["consistent"]]
        rule = (f"mean deviance at most {max_excess:g} per scan pixel above the noise's and counts within "
                f"{100 * count_tolerance:g} %, each widened by 3 standard deviations of Poisson noise")
        typer.echo(f"verdict: consistent ({rule} for every map)" if ok else
                   f"verdict: NOT consistent: {', '.join(bad)} ({len(bad)} of {len(rows)} maps fail: {rule})")
        if out:
            typer.echo(f"check written to {out}")
    if not ok:
        raise typer.Exit(1)


@app.command()
def reconstruct(
    src: Annotated[str, typer.Argument(help="Projection series store (path or URL).")],
    dst: Annotated[str, typer.Argument(help="Destination store for the volume.")],
    algorithm: Annotated[str, typer.Option(help="fbp, sirt, mlem or cgls.")] = "fbp",
    backend: Annotated[str, typer.Option(help="auto, nufft, astra, torch or tomopy (where installed).")] = "auto",
    center: Annotated[str, typer.Option(help="Rotation axis in detector pixels, 'middle', or 'find' (the centre "
                                             "found is printed).")] = "middle",
    align: Annotated[bool, typer.Option(help="Correct the drift of the projections first (xrfsr_dask.tomo.align); "
                                             "the shifts are stored in the volume's provenance.")] = False,
    angle_convention: Annotated[str, typer.Option(
        help="xrfsr, or tomopy for angles in the sense of TomoPy, scikit-image and ASTRA.")] = "xrfsr",
    iterations: Annotated[int | None, typer.Option(help="Iterations of sirt, mlem or cgls.")] = None,
    filter_name: Annotated[str, typer.Option(
        "--filter", help="FBP filter: ramp, shepp-logan, cosine, hamming, hann.")] = "shepp-logan",
    slices_per_chunk: Annotated[int | None, typer.Option(help="Sinogram rows per task.")] = None,
    device: Device = "auto",
    cluster: Annotated[str, typer.Option(help="none (threads here), local (new cluster) or an address.")] = "none",
    resume: Resume = False,
    overwrite: Overwrite = False,
    progress: Progress = True,
    storage_option: StorageOptions = None,
) -> None:
    """Reconstruct every element's volume from a projection series store into a new store."""
    from xrfsr_dask.io import open_xrf
    from xrfsr_dask.tomo import align as align_series
    from xrfsr_dask.tomo import find_center, reconstruct_to_zarr

    where = _center(center)
    options = _write_options(overwrite, resume, progress, storage_option)
    source: Any = src
    if where == "find" or align:
        series = _run(open_xrf, src, storage_options=options["storage_options"])
        if where == "find":
            where = _run(find_center, series)
            typer.echo(f"rotation centre found: {where.pixel:.2f} px ({where.offset_pixel:+.2f} px from the "
                       f"detector's middle), x = {where.nm:.1f} nm, method {where.method}")
        if align:
            aligned = _run(align_series, series, center=where)
            largest = float(abs(aligned.shift_px).max())
            typer.echo(f"aligned: {aligned.iterations} iterations, converged {aligned.converged}, largest shift "
                       f"{largest:.2f} px; the shifts are stored in the volume's provenance (xrfsr_dask.tomo.align)")
            series = aligned.series
        source = series
    _write_on_cluster(cluster, reconstruct_to_zarr, source, dst, algorithm=algorithm, backend=backend, center=where,
                      iterations=iterations, filter_name=filter_name, slices_per_chunk=slices_per_chunk,
                      device=device, angle_convention=angle_convention, **options)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the stores, results.json and report/.")] = Path("demo-output"),
    size: Annotated[int, typer.Option(
        help="Scan points across the field: a multiple of 4, at least 32 and at least the model's receptive field "
             "(2 r + 1 LR pixels); time grows about as size^2 x angles.")] = 64,
    angles: Annotated[int | None, typer.Option(help="Projections per dataset (default: size).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the particles, drift and noise.")] = 7,
    overwrite: Annotated[bool, typer.Option(help="Replace earlier demo output in OUT.")] = False,
) -> None:
    """The paper's experiment on generated data for both optics (FZP, MLL), and its report.

    Two independent fly-scanned XRF tomography series per optic, probe fits,
    RDN enhancement on a local dask cluster, alignment, LR and HR
    reconstructions, FSC/PSD/PSNR, and report/index.html with Supplementary
    Figures 1-6 and the paper's numbers beside this run's.
    """
    from xrfsr_dask.demo import run_demo

    _run(run_demo, out, size=size, angles=angles, seed=seed, overwrite=overwrite)


def main() -> None:
    """Entry point for ``python -m xrfsr_dask``."""
    app()
