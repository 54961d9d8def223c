"""The demo's report: one HTML page and one PNG per supplementary figure of Wu et al. (2023).

:func:`write_report` takes what :func:`xrfsr_dask.demo.run_demo` measured
and writes ``index.html`` beside ``S1.png`` … ``S6.png``:

- S1: one HR map scanned step by step and on the fly, with the
  energy-resolved spectra the detector records;
- S2: loss curves from the training log of the model used;
- S3: the probe fits of both optics;
- S4: FSC between the two datasets (half-bit, one-bit) and against the
  ground truth (0.5), LR and HR, crossings as half periods 1/(2f) in nm,
  and what the FSC between the two enhanced datasets does and does not
  measure (the library's :class:`~xrfsr_dask.errors.EnhancedFSCWarning`,
  recorded by the demo, is shown);
- S5: central slices of the LR and HR volumes, Ni, Co and Mo;
- S6: PSD of the LR and HR volumes;

and a table of the paper's numbers next to this run's and next to what the
ground truth says.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave

from xrfsr_dask.plot import (
    _scale_bar,
    plot_fsc,
    plot_loss_curves,
    plot_probe_fit,
    plot_psd,
    plot_slices,
)

if TYPE_CHECKING:
    from xrfsr_dask.demo import DemoRun, OpticRun

__all__ = ["scan_modes_figure", "write_report"]

DPI = 90
SLICE_ELEMENTS = ["Ni_K", "Co_K", "Mo_L"]


def _pixels(fig: Figure) -> np.ndarray:
    """The figure rendered to an RGB array at :data:`DPI`."""
    fig.set_dpi(DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _grid(rows: Sequence[Sequence[Figure]]) -> np.ndarray:
    """Figures tiled row by row on white, each row as tall as its tallest figure."""
    images = [[_pixels(fig) for fig in row] for row in rows]
    width = max(sum(im.shape[1] for im in row) for row in images)
    strips = []
    for row in images:
        height = max(im.shape[0] for im in row)
        strip = np.full((height, width, 3), 255, np.uint8)
        x = 0
        for im in row:
            strip[: im.shape[0], x: x + im.shape[1]] = im
            x += im.shape[1]
        strips.append(strip)
    return np.concatenate(strips, axis=0)


def _image(ax: Any, data: xr.DataArray, title: str) -> None:
    y, x = data.y.values, data.x.values
    dy, dx = y[1] - y[0], x[1] - x[0]
    extent = (x[0] - dx / 2, x[-1] + dx / 2, y[-1] + dy / 2, y[0] - dy / 2)
    shown = ax.imshow(np.asarray(data.values), extent=extent, cmap="viridis")
    ax.figure.colorbar(shown, ax=ax, label=data.attrs.get("units", "counts"), shrink=0.8)
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(title, fontsize=10)
    _scale_bar(ax, abs(extent[1] - extent[0]))


def scan_modes_figure(modes: dict[str, xr.DataArray], *, element: str = "Ni_K") -> Figure:
    """Supplementary Fig. 1: HR map, its step and fly scans, a fast-axis profile and the spectra."""
    hr, step, fly = modes["hr"], modes["step"], modes["fly"]
    fig = Figure(figsize=(14, 8.4), layout="constrained")
    top = fig.subplots(2, 3)
    hr_step = float(hr.x.values[1] - hr.x.values[0])
    lr_step = float(step.x.values[1] - step.x.values[0])
    probe = float(step.attrs["probe_fwhm_nm"])
    _image(top[0, 0], hr.sel(element=element), f"{element}: HR map, {hr_step:g} nm pixels")
    _image(top[0, 1], step.sel(element=element), f"step scan: probe {probe:g} nm, step {lr_step:g} nm")
    _image(top[0, 2], fly.sel(element=element), f"fly scan along x: probe {probe:g} nm, step {lr_step:g} nm")

    row = float(step.y.values[step.sizes["y"] // 2])
    ax = top[1, 0]
    ax.plot(hr.x.values, hr.sel(element=element).sel(y=row, method="nearest").values, color="0.6", label="HR map")
    ax.plot(step.x.values, step.sel(element=element, y=row).values, "o-", markersize=3, label="step scan")
    ax.plot(fly.x.values, fly.sel(element=element, y=row).values, "s--", markersize=3, label="fly scan")
    ax.set_xlabel("x, the fast axis (nm)")
    ax.set_ylabel(f"{element} ({step.attrs.get('units', 'counts')})")
    ax.set_title(f"profile along the fast axis at y = {row:.0f} nm", fontsize=10)
    ax.legend(fontsize=8)

    for ax, (mode, colour) in zip(top[1, 1:], (("step", "C1"), ("fly", "C2")), strict=True):
        spectrum = modes[f"{mode}_spectrum"]
        energy = spectrum.energy.values
        ax.semilogy(energy, np.maximum(spectrum.values, 1e-3), color=colour, label=f"{mode} scan, whole map")
        scan = modes[mode]
        for name, line in zip(scan.element.values, scan.energy_kev.values, strict=True):
            peak = float(spectrum.sel(energy=float(line), method="nearest"))
            ax.annotate(str(name).replace("_", " "), (float(line), peak), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xlim(1.0, 20.0)
        ax.set_ylim(bottom=max(1.0, float(spectrum.max()) * 1e-6))
        ax.set_xlabel("photon energy (keV)")
        ax.set_ylabel(f"counts per {1000 * float(energy[1] - energy[0]):.0f} eV channel")
        ax.set_title(f"energy-resolved: the {mode} scan's summed spectrum", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("Supplementary Fig. 1: LR XRF simulated from an HR map, step scan against fly scan")
    return fig


def _fmt(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "not crossed"
    return f"{value:.1f}{unit}"


def _comparison_rows(runs: Sequence[OpticRun]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for run in runs:
        n, paper, name = run.numbers, run.optic.paper, run.optic.name
        t = run.optic.threshold
        rows += [
            ("probe FWHM (2-D Gaussian fit)", name, _fmt(paper["probe_nm"], " nm"),
             (f"{n['probe_fit_nm']['geometric_mean']:.1f} nm (major {n['probe_fit_nm']['major']:.1f} "
              f"± {n['probe_fit_nm']['major_stderr']:.2f}, minor {n['probe_fit_nm']['minor']:.1f})"),
             _fmt(n["probe_true_nm"], " nm") + " (simulated)"),
            (f"LR resolution, FSC {t}, half period 1/(2f)", name, _fmt(paper["lr_half_period_nm"], " nm"),
             _fmt(n["lr_half_period_nm"], " nm"), _fmt(n["lr_truth_half_period_nm"], " nm")),
            (f"HR resolution, FSC {t}, half period 1/(2f) (enhanced pair: reproducibility, see below)", name,
             _fmt(paper["hr_half_period_nm"], " nm"), _fmt(n["hr_half_period_nm"], " nm"),
             _fmt(n["hr_truth_half_period_nm"], " nm")),
            ("combined sqrt(b² + s²), s the LR half period", name, _fmt(paper["combined_half_period_nm"], " nm"),
             _fmt(n["combined_half_period_nm"], " nm"), _fmt(n["combined_truth_half_period_nm"], " nm")),
            ("PSNR between datasets, LR (paper's formula)", name, _fmt(paper["psnr_lr_db"], " dB"),
             f"{n['psnr_db']['lr']['paper']:.1f} dB (standard {n['psnr_db']['lr']['standard']:.1f} dB)", "—"),
            ("PSNR between datasets, HR (paper's formula)", name, _fmt(paper["psnr_hr_db"], " dB"),
             f"{n['psnr_db']['hr']['paper']:.1f} dB (standard {n['psnr_db']['hr']['standard']:.1f} dB)", "—"),
        ]
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _element_rows(run: OpticRun) -> list[list[str]]:
    rows = []
    for element, values in run.numbers["per_element"].items():
        rows.append([run.optic.name, element] + [
            _fmt(values[f"{key}_half_period_nm"], " nm") for key in (
                "lr_half-bit", "lr_one-bit", "lr_truth", "hr_half-bit", "hr_one-bit", "hr_truth")
        ])
    return rows


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; }
th { background: #eee; }
img { max-width: 100%; border: 1px solid #ddd; }
figcaption { margin: 0.4em 0 2em; max-width: 60em; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def write_report(run: DemoRun, folder: str | Path) -> Path:
    """Write ``index.html`` and ``S1.png`` … ``S6.png`` into ``folder``; return the HTML's path."""
    from xrfsr_dask.model.weights import _bundled, load_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_name = run.settings["model"]
    model = load_model(model_name)
    log = _bundled().joinpath(f"{model_name}.log.csv")
    optics = run.optics
    figures = {
        "S1": _grid([[scan_modes_figure(run.scan_modes)]]),
        "S2": _grid([[plot_loss_curves(str(log), title=f"Supplementary Fig. 2: training curves of {model_name}")]]),
        "S3": _grid([[plot_probe_fit(o.probe_image, o.probe_fit, title=f"{o.optic.name} ({o.optic.description}) "
                                     "probe: 2-D Gaussian fit") for o in optics]]),
        "S4": _grid([
            [plot_fsc(o.fsc[grid], title=f"{o.optic.name} {grid.upper()}: FSC between datasets a and b")
             for grid in ("lr", "hr")]
            + [plot_fsc(o.fsc[f"{grid}_truth"], title=f"{o.optic.name} {grid.upper()}: FSC of dataset a "
                        "against the ground truth") for grid in ("lr", "hr")]
            for o in optics
        ]),
        "S5": _grid([
            [plot_slices(o.volumes[f"{grid}_a"], elements=SLICE_ELEMENTS,
                         title=f"{o.optic.name} {grid.upper()} volume, central z slice "
                               f"({o.numbers[f'{grid}_voxel_nm']:g} nm voxels)")]
            for o in optics for grid in ("lr", "hr")
        ]),
        "S6": _grid([[plot_psd(o.psd["lr"], o.psd["hr"], labels=["LR", "HR"],
                               title=f"{o.optic.name}: PSD of the LR and HR volumes (dataset a)") for o in optics]]),
    }
    for name, pixels in figures.items():
        imsave(folder / f"{name}.png", pixels)

    captions = {
        "S1": "A map of the HR particle (Ni) scanned with the FZP probe, step by step and on the fly along x; "
              "the profile shows the fly scan's extra smear along the fast axis. Spectra: the energy-resolved "
              "counts the detector records summed over the map (silicon drift detector response), with the "
              "element lines marked.",
        "S2": f"Loss per epoch of the model used ({model_name}) on its training, validation and test sets.",
        "S3": "Probe images (a scan across a point-like particle, Poisson counts) with the fitted 2-D Gaussian: "
              "FWHM ellipse and profiles through the centre.",
        "S4": "Left pair: FSC between the two independent datasets (half-bit and one-bit thresholds), as in the "
              "paper. Right pair: FSC of dataset a against the ground truth on the same voxels (threshold 0.5), "
              "which the paper could not measure. Circles mark the crossings f; the legends and the top axes "
              "give resolutions as half periods 1/(2f). The HR curve between datasets a and b compares two "
              "enhanced datasets: it measures how reproducible the enhancement is, not the resolution; the HR "
              "curve against the ground truth measures the resolution (see FSC of enhanced data above).",
        "S5": "Central slices (normal to the rotation axis) of the FBP reconstructions of dataset a, LR and HR.",
        "S6": "Shell-averaged power spectral density of the LR and HR volumes (log-spaced shells).",
    }
    card = model.card
    settings = run.settings
    table = _table(["quantity", "optic", "paper (Wu et al. 2023)", "this run", "ground truth"],
                   _comparison_rows(optics))
    elements = _table(
        ["optic", "element", "LR half-bit", "LR one-bit", "LR vs truth (0.5)", "HR half-bit", "HR one-bit",
         "HR vs truth (0.5)"],
        [row for o in optics for row in _element_rows(o)],
    )
    recorded = [note for o in optics for note in o.fsc_warnings]
    fsc_warnings = (
        "<p>The library warned (<code>EnhancedFSCWarning</code>) when the demo ran it:</p><ul>"
        + "".join(f"<li><code>{html.escape(note)}</code></li>" for note in recorded) + "</ul>"
        if recorded else "<p>No FSC warning was recorded in this run.</p>"
    )
    timing = _table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in run.seconds.items()])
    setup = _table(["setting", "value"], [
        ["scan points across the field", str(settings["size"])],
        ["LR rows (slices)", str(settings["rows"])],
        ["projections per dataset (a and b interleaved over 180°)", str(settings["angles"])],
        ["scan", (f"{settings['scan_mode']}, Poisson counts ({settings['counts']:g} Ni counts per ground-truth "
                  f"voxel in dense grains), jitter 5 % of the step, stage drift {settings['drift_nm']:g} nm rms")],
        ["optics", "; ".join(f"{o.optic.name}: probe {o.optic.probe_nm:g} nm, step {o.optic.step_nm:g} nm, "
                             f"ground truth {o.optic.truth_voxel_nm:g} nm voxels" for o in optics)],
        ["model", f"{model_name} ({card['parameters']} parameters, weights sha256 {card['weights_sha256'][:16]}…)"],
        ["reconstruction", (f"{settings['algorithm'].upper()} (xrfsr_dask.tomo, NUFFT backend), after "
                            "projection-matching alignment of the LR series; the same nm shifts applied to HR")],
        ["seed", str(settings["seed"])],
        ["xrfsr_dask", settings["library_version"]],
    ])
    figures_html = "".join(
        f'<figure><img src="{name}.png" alt="Supplementary Fig. {name[1]}">'
        f"<figcaption><b>{name}.</b> {html.escape(captions[name])}</figcaption></figure>"
        for name in figures
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>xrfsr_dask demo report</title><style>{_CSS}</style></head>
<body>
<h1>Resolution-enhanced XRF tomography on generated data</h1>
<p>The experiment of Wu et al., <i>Resolution-enhanced X-ray fluorescence microscopy via deep residual
networks</i>, npj Comput. Mater. 9, 43 (2023), run by <code>xrfsr demo</code> on synthetic NMC particles
(Ni, Co, Mn, Mo) for two optics. Each optic's two datasets are independent scans of the same particle
(interleaved angles, their own drift, jitter and counting noise).</p>
<h2>Paper against this run</h2>
{table}
<p><b>How to read it.</b> Resolutions are Ni K, given as half periods 1/(2f) at the FSC crossing
frequency f: the convention of X-ray microscopy and of the paper, whose LR resolutions lie above the scan
step (the half period at the Nyquist frequency). Full periods 1/f, twice these, are in
<code>results.json</code> (<code>*_full_period_nm</code>). The probe FWHM is the geometric mean of the fitted
major and minor FWHM (± the fit's standard error). The LR and HR rows use the threshold the paper used for
that optic (FZP half-bit, MLL one-bit) on the FSC between the two datasets. The combined resolution is
sqrt(b² + s²) with b the fitted probe FWHM and s the LR FSC half period, as in the paper. The ground-truth
column is what the synthetic data allow: the simulated probe, and the FSC of dataset a against the true
particle on the same voxels at 0.5; the combined entry uses both. The paper's PSNR formula,
20·log10(MAX/MSE) with MAX = 1, is exactly twice the standard 10·log10(MAX²/MSE) in dB; both are
given. "Not crossed": the curve stays above the threshold up to Nyquist (the LR or HR voxel's
resolution limit, a half period of 1 voxel).</p>
<h2>FSC of enhanced data</h2>
<p>The HR row "this run" is, as in the paper, an FSC between two enhanced datasets. It measures how
reproducible the enhancement is, not the resolution: the same network processed both datasets, so what it
adds to both correlates, and the curve cannot tell it from detail in the sample. Compare it with the
ground-truth column, the FSC of one enhanced dataset against the true particle: where the HR FSC between
datasets is finer, it claims more than the data hold. On measured data, where no ground truth exists,
check the enhanced data against the measured data with the data-consistency check
(<code>xrfsr_dask.consistency.consistency</code>, <code>xrfsr check ENHANCED MEASURED</code>) rather than
quoting this FSC as a resolution.</p>
{fsc_warnings}
<h2>Every element (half periods 1/(2f))</h2>
{elements}
<h2>Figures</h2>
{figures_html}
<h2>Run</h2>
{setup}
{timing}
<p>Stores (zarr v3) beside this folder: <code>FZP/</code> and <code>MLL/</code> hold the ground truth,
both LR series, their enhancements and the four volumes; <code>results.json</code> holds every number
above.</p>
</body></html>
"""
    path = folder / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
