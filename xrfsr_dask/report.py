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
- S5: central slices of the LR and HR volumes and of the ground truth on
  the HR voxels, Ni, Co and Mo, on one physical scale (counts per
  (10 nm)³) and one colour scale per element;
- S6: PSD of the LR and HR volumes and of the ground truth, on that scale,
  one panel per element;
- C1 (not in the paper): consistency maps — the measured LR projection, the
  Poisson deviance of the enhanced and of the refined projection against
  it, the profile across the particle's edge (truth, LR, HR, refined HR in
  counts per (10 nm)²), and the deviance against refinement iterations;

a table of the paper's numbers next to this run's and next to what the
ground truth says, and a table of the consistency check.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave

from xrfsr_dask._demo_records import DemoRun, OpticRun
from xrfsr_dask.consistency import EXCESS_TOLERANCE
from xrfsr_dask.plot import (
    add_scale_bar,
    plot_fsc,
    plot_loss_curves,
    plot_probe_fit,
    plot_psd,
    plot_slice_comparison,
)

__all__ = ["consistency_figure", "scan_modes_figure", "write_report"]

DPI = 90
SLICE_ELEMENTS = ["Ni_K", "Co_K", "Mo_L"]
_ALT = {"S": "Supplementary Fig.", "C": "Consistency figure"}


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


def _image(ax: Any, data: xr.DataArray, title: str, *, label: str | None = None, **style: Any) -> None:
    y, x = data.y.values, data.x.values
    dy, dx = y[1] - y[0], x[1] - x[0]
    extent = (x[0] - dx / 2, x[-1] + dx / 2, y[-1] + dy / 2, y[0] - dy / 2)
    shown = ax.imshow(np.asarray(data.values), extent=extent, **({"cmap": "viridis"} | style))
    ax.figure.colorbar(shown, ax=ax, label=label or data.attrs.get("units", "counts"), shrink=0.8)
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(title, fontsize=10)
    add_scale_bar(ax, abs(extent[1] - extent[0]))


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


_VARIANTS = {"truth": "ground truth", "lr": "LR (measured)", "hr": "HR (network)", "refined": "refined HR"}
_PROFILE_STYLE = {
    "truth": {"color": "0.2", "linewidth": 1.4},
    "lr": {"color": "C0", "marker": "o", "markersize": 5, "linestyle": "none"},
    "hr": {"color": "C1", "marker": "s", "markersize": 3.5, "linewidth": 1.2},
    "refined": {"color": "C2", "marker": "^", "markersize": 3.5, "linewidth": 1.0, "linestyle": "--"},
}


def _consistency_row(axes: Sequence[Any], run: OpticRun) -> None:
    """One optic's row of :func:`consistency_figure`."""
    check, optic = run.check, run.optic
    numbers = check["numbers"]
    element, refined_label = check["element"], _refined_label(numbers)
    measured = check["measured"]
    _image(axes[0], measured, f"{optic.name}: measured LR {element} at {check['angle_deg']:g}°, "
           f"{optic.step_nm:g} nm steps", label=f"{element} ({measured.attrs['units']})")
    for edge in check["profile_band_nm"]:
        axes[0].axhline(edge, color="white", linestyle="--", linewidth=0.8)
    axes[0].annotate("profile rows", (float(measured.x.values[1]), check["profile_band_nm"][0]), color="white",
                     fontsize=8, va="bottom")
    maps = {"hr": check["deviance"]["hr"], "refined": check["deviance"]["refined"]}
    values = np.concatenate([np.asarray(m.values).ravel() for m in maps.values()])
    top = max(3.0, float(np.nanpercentile(values, 99.5)))
    for ax, (name, deviance) in zip(axes[1:3], maps.items(), strict=True):
        shown = check["shown"][name]
        which = "HR (network)" if name == "hr" else refined_label
        _image(ax, deviance, f"{which}: Poisson deviance, mean {shown['mean_deviance']:.2f}\n"
               f"(Poisson noise alone: {shown['expected_mean_deviance']:.2f})",
               label="deviance per scan pixel (dimensionless)", cmap="magma", vmin=0.0, vmax=top)

    ax = axes[3]
    step = optic.step_nm
    edge = check["edge_nm"]
    window = (edge - 3 * step, edge + 6 * step)
    overshoot = numbers["edge_overshoot_percent"]
    for name in ("truth", "lr", "hr", "refined"):
        profile = check["profiles"][name]
        keep = (profile.x.values >= window[0]) & (profile.x.values <= window[1])
        label = _VARIANTS[name] if name != "refined" else refined_label
        if name in overshoot:
            label += f": rim {overshoot[name]:+.1f} % of the step"
        ax.plot(profile.x.values[keep], profile.values[keep], label=label, **_PROFILE_STYLE[name])
    ax.axvspan(edge, edge + 2 * step, color="0.9", zorder=0, label="rim: overshoot measured here")
    ax.set_xlim(*window)
    ax.set_xlabel("x along the profile (nm)")
    ax.set_ylabel(f"{element} ({measured.attrs['units']})")
    low, high = check["profile_band_nm"]
    ax.set_title(f"across the particle's left edge: rows y = {low:.0f}–{high:.0f} nm (mean)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    # The overshoot as measured: excess over the truth, mean of every projection checked and both edges.
    inset = ax.inset_axes((0.56, 0.1, 0.42, 0.36))
    excess = check["rim_excess"]
    inset.axvspan(0, 2 * step, color="0.9", zorder=0)
    inset.axhline(0, color="0.2", linewidth=0.8)
    for name in ("hr", "refined"):
        style = {k: v for k, v in _PROFILE_STYLE[name].items() if k != "markersize"}
        inset.plot(excess["distance_nm"], 100 * excess[name], markersize=2.5, **style)
    inset.set_xlabel("distance inside the outline (nm)", fontsize=7, labelpad=1)
    inset.set_ylabel("map − truth\n(% of step)", fontsize=7, labelpad=1)
    inset.tick_params(labelsize=6, pad=1)
    inset.set_title(f"whole outline, {numbers['projections']} projections", fontsize=7, pad=2)

    ax = axes[4]
    ladder = numbers["refine_ladder"]
    steps = [entry["iterations"] for entry in ladder]
    ax.plot(steps, [entry["mean_deviance"] for entry in ladder], "o-", color="C3", label="mean deviance")
    ax.plot(steps, [entry["expected_mean_deviance"] for entry in ladder], ":", color="C3",
            label="Poisson noise alone")
    shown_stop = numbers["refine_stops"]["shown"]
    ax.axvline(shown_stop, color="0.5", linewidth=0.8, label=f"refine='auto' stopped here (N = {shown_stop:.2f})")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("refinement iterations N")
    ax.set_ylabel("mean deviance per scan pixel (dimensionless)", color="C3")
    twin = ax.twinx()
    twin.plot(steps, [entry["error_vs_truth_percent"] for entry in ladder], "s--", color="C4", markersize=4,
              label="RMS error against the truth (%)")
    twin.set_ylabel("RMS error against the truth, HR grid (%)", color="C4")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncols=2)
    ax.set_title("the projection shown, refined N times", fontsize=10)


def consistency_figure(runs: Sequence[OpticRun]) -> Figure:
    """Consistency maps: one projection per optic, checked against the measured counts.

    Per optic (row): the measured LR projection (counts per (10 nm)²) with
    the rows of the profile marked; the Poisson deviance per scan pixel of
    the enhanced (HR) and of the refined HR projection against it (about 1,
    or the Poisson expectation printed above each map, where consistent);
    the profile across the particle's edge of the ground truth, LR, HR and
    refined HR on one per-area scale, with the rim overshoot; and the mean
    deviance and the error against the truth as refinement proceeds.
    """
    fig = Figure(figsize=(27, 4.6 * len(runs) + 0.6), layout="constrained")
    axes = fig.subplots(len(runs), 5, squeeze=False, width_ratios=[1.25, 1.25, 1.25, 1.15, 1.0])
    for row, run in zip(axes, runs, strict=True):
        _consistency_row(row, run)
    fig.suptitle("Consistency with the measured counts: one projection of dataset a per optic, "
                 "Poisson deviance of the enhanced (HR) and refined HR maps, and the profile across the "
                 "particle's edge")
    return fig


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


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
        c = n["consistency"]
        dev, expect, total = c["mean_deviance"], c["expected_mean_deviance"], c["total_count_ratio"]
        rows += [
            (f"mean Poisson deviance against the measured counts, HR | {_refined_label(c)}; "
             "in brackets: Poisson noise alone", name, "— (not measured)",
             f"HR {dev['hr']:.3f} ({expect['hr']:.3f}) | refined {dev['refined']:.3f} ({expect['refined']:.3f})",
             f"{dev['truth']:.3f} ({expect['truth']:.3f})"),
            ("total-count ratio (enhanced / measured), HR | refined HR", name, "— (not measured)",
             f"HR {total['hr']:.4f} | refined {total['refined']:.4f}", f"{total['truth']:.4f}"),
        ]
    return rows


def _consistency_rows(run: OpticRun) -> list[list[str]]:
    c = run.numbers["consistency"]
    rows = []
    for name in ("truth", "hr", "refined"):
        label = {"truth": "ground truth (reference)", "hr": "HR (network)",
                 "refined": _refined_label(c)}[name]
        overshoot = c["edge_overshoot_percent"].get(name)
        rows.append([
            run.optic.name, label, f"{c['mean_deviance'][name]:.3f}", f"{c['expected_mean_deviance'][name]:.3f}",
            f"{c['mean_deviance'][name] - c['expected_mean_deviance'][name]:+.3f}", f"{c['count_ratio'][name]:.4f}",
            f"{c['total_count_ratio'][name]:.4f}",
            "0 (the reference)" if name == "truth" else f"{c['error_vs_truth_percent'][name]:.1f} %",
            "0 (the reference)" if overshoot is None else f"{overshoot:+.1f} %",
        ])
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


def _settled(optics: Sequence[OpticRun]) -> str:
    """Where the mean deviance stops changing with more refinement, per optic, from the run's own ladder."""
    parts, latest = [], 0
    for o in optics:
        ladder = o.numbers["consistency"]["refine_ladder"]
        values = [entry["mean_deviance"] for entry in ladder]
        span = abs(values[0] - values[-1]) or 1.0
        settled = next(entry["iterations"] for k, entry in enumerate(ladder)
                       if all(abs(v - values[-1]) <= 0.02 * span for v in values[k:]))
        latest = max(latest, settled)
        parts.append(f"{o.optic.name}: the mean deviance is within 2 % of its final change by N = {settled}")
    stops = "; ".join(f"{o.optic.name}: {_refined_label(o.numbers['consistency'], short=True)} (mean "
                      f"{o.numbers['consistency']['refine_stops']['mean']:.2f})" for o in optics)
    verdict = (f"refine='auto' stopped each projection where its deviance met the noise's, after {stops} "
               "updates (fractional: the last update is taken in part).")
    return "; ".join(parts) + ". " + verdict


def _refined_label(consistency: dict[str, Any], *, short: bool = False) -> str:
    """How the refined maps were made, from a run's consistency numbers: ``refined HR (auto, N = a–b)``."""
    stops = consistency["refine_stops"]
    span = (f"N = {stops['min']:.2f}" if stops["min"] == stops["max"]
            else f"N = {stops['min']:.2f}–{stops['max']:.2f}")
    text = f"{consistency['refine_iterations']}, {span}"
    return text if short else f"refined HR ({text})"


def _fsc_html(optics: Sequence[OpticRun]) -> str:
    """The section on FSC between enhanced datasets, with this run's numbers."""
    pairs = []
    for o in optics:
        pair, truth = o.numbers["hr_half_period_nm"], o.numbers["hr_truth_half_period_nm"]
        verdict = ("finer: the pair claims more than the data hold" if _finite(pair) and _finite(truth)
                   and pair < truth else "not finer: here the pair does not over-claim")
        pairs.append(f"{o.optic.name}: HR pair {_fmt(pair, ' nm')} against the truth's {_fmt(truth, ' nm')}, "
                     f"{verdict} (LR pair {_fmt(o.numbers['lr_half_period_nm'], ' nm')}, truth "
                     f"{_fmt(o.numbers['lr_truth_half_period_nm'], ' nm')})")
    pair_text = "; ".join(pairs)
    checks = []
    for o in optics:
        c = o.numbers["consistency"]
        dev, exp, err = c["mean_deviance"], c["expected_mean_deviance"], c["error_vs_truth_percent"]
        fit = ("below what Poisson noise alone gives: it fits the noise of this one measurement"
               if dev["refined"] < exp["refined"] - 0.02 else "close to what Poisson noise alone gives")
        trend = "rises" if err["refined"] > err["hr"] else "falls"
        excess = dev["hr"] - exp["hr"]
        verdict = (f"an excess of {excess:+.2f}, a systematic error of {math.sqrt(excess):.1f} noise standard "
                   "deviations that the measurement contradicts (where: the HR deviance map of figure C1)"
                   if excess > EXCESS_TOLERANCE else f"an excess of {excess:+.2f}, within Poisson noise")
        checks.append(
            f"{o.optic.name}: HR deviance {dev['hr']:.3f} (noise alone {exp['hr']:.3f}), {verdict}; count ratio "
            f"{c['count_ratio']['hr']:.4f}, rim overshoot {c['edge_overshoot_percent']['hr']:+.1f} %; refined "
            f"({_refined_label(c, short=True)}) {dev['refined']:.3f} (noise alone {exp['refined']:.3f}), {fit}, "
            "and its "
            f"error against the truth {trend} from {err['hr']:.1f} % to {err['refined']:.1f} %")
    return f"""<p><b>What the FSC between two enhanced datasets shows.</b> How reproducibly the network maps
two independent scans of one sample (their own noise, drift, jitter and interleaved angles) onto the fine
grid: a network that amplified noise, or depended on exactly where the probe sampled, would decorrelate
the two, and the curve would fall early.</p>
<p><b>What it does not show.</b> The resolution, or whether the detail is right. The same network processed
both datasets, so whatever it adds to both — sharper edges, a bright rim at the particle's surface, grain
texture learnt in training — correlates between them and counts as signal; the half-bit and one-bit
thresholds assume two datasets that differ by independent noise, which two enhanced datasets no longer
are. The ground-truth column, the FSC of one enhanced dataset against the true particle, is the
resolution; in this run: {html.escape(pair_text)}.</p>
<p><b>Nor does agreement with the measured data settle it.</b> The data-consistency check
(<code>xrfsr_dask.consistency.consistency</code>, <code>xrfsr check ENHANCED MEASURED</code>; table and
figure C1 below) pushes an enhanced map back through the scan and compares it with the counts measured. A
mean deviance near what Poisson noise alone gives and a count ratio near 1 say the map contradicts nothing
that was measured; they cannot say whether detail finer than the probe is right, because the probe's blur
removes exactly that detail from the prediction: any map that differs from the truth only there passes.
{html.escape("; ".join(checks))}. Even the ground truth's deviance lies a little above the Poisson
expectation (consistency table): the check's forward model leaves out the scan's random position jitter
and uses the fitted probe, and that excess is the floor a real map can reach. A low deviance is necessary,
not sufficient. On measured data, where no
ground truth exists, quote the consistency check beside the FSC, and do not quote the FSC of enhanced
datasets as a resolution.</p>"""


def _gaps_html(run: DemoRun, card: dict[str, Any]) -> str:
    """Why this run's numbers differ from the paper's, row by row of the table."""
    settings, optics = run.settings, run.optics
    fits = "; ".join(f"{o.optic.name} {o.numbers['probe_fit_nm']['geometric_mean']:.1f} nm for "
                     f"{o.optic.probe_nm:g} nm" for o in optics)
    lr = "; ".join(f"{o.optic.name} {_fmt(o.numbers['lr_half_period_nm'], ' nm')} between datasets, "
                   f"{_fmt(o.numbers['lr_truth_half_period_nm'], ' nm')} against the truth" for o in optics)
    hr = "; ".join(f"{o.optic.name} {_fmt(o.numbers['hr_truth_half_period_nm'], ' nm')}" for o in optics)
    data = card.get("training", {}).get("settings", {}).get("data", {})
    trained = {"maps": "synthetic 2-D maps", "projections": "synthetic projections",
               "mixed": "synthetic maps and projections"}.get(str(data.get("sample")), "synthetic data")
    psnr = "; ".join(f"{o.optic.name} LR {o.numbers['psnr_db']['lr']['paper']:.1f} dB, HR "
                     f"{o.numbers['psnr_db']['hr']['paper']:.1f} dB against the paper's "
                     f"{o.optic.paper['psnr_lr_db']:.1f} and {o.optic.paper['psnr_hr_db']:.1f} dB" for o in optics)
    size = "; ".join(f"{o.optic.name} {0.8 * settings['size'] * o.optic.step_nm / 1000:.2f} µm across, grains "
                     f"about {6 * o.optic.step_nm:.0f} nm" for o in optics)
    return f"""<ul>
<li><b>Convention.</b> None of the gaps is one of convention: both columns give resolutions as half periods
1/(2f) at the paper's thresholds, and PSNR in the paper's formula (the standard value, half of it, beside).</li>
<li><b>Probe FWHM.</b> The demo simulates the paper's probes (slightly elliptical), so the fits recover the
paper's numbers by construction: {html.escape(fits)}.</li>
<li><b>LR and combined resolution: different sample, simulated data.</b> A synthetic NMC622 particle
({html.escape(size)}; {settings['counts']:g} Ni counts per ground-truth voxel in dense grains), a slab
{settings['rows']} scan rows tall, {settings['angles']} projections per dataset, scanned by an ideal Gaussian
probe with Poisson counts, position jitter and stage drift — no self-absorption, detector response, probe
tails, flux changes or sample changes. The FSC crossing depends on the sample's spectrum and the dose (where
signal sinks below noise), so another particle and dose give other numbers. The LR measurement itself is
sound: {html.escape(lr)}.</li>
<li><b>HR resolution: model size and training, and what is measured.</b> {html.escape(str(card.get('name')))} has
{card.get('parameters')} parameters (the paper's RDN about 22 million) and was trained on {trained}, not
on the paper's data; and the paper's HR number is an FSC between enhanced datasets,
which measures reproducibility (above). What this model resolves here is the ground-truth column:
{html.escape(hr)}.</li>
<li><b>PSNR: what differs between the datasets.</b> Here the two datasets of one sample differ only by
counting noise, drift and jitter, which enhancement largely removes, so PSNR rises from LR to HR
({html.escape(psnr)}). The paper's fell: its two enhanced datasets differed more than its measured ones,
for reasons a simulation without real-data artefacts cannot reproduce and the paper does not give.</li>
<li><b>Consistency.</b> The paper has no data-consistency check; the deviance, count-ratio and overshoot rows
have no counterpart there.</li>
</ul>"""


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
    """Write ``index.html``, ``S1.png`` … ``S6.png`` and ``C1.png`` into ``folder``; return the HTML's path."""
    from xrfsr_dask.model.weights import bundled_folder, load_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_name = run.settings["model"]
    model = load_model(model_name)
    log = bundled_folder().joinpath(f"{model_name}.log.csv")
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
        "S5": _grid([[plot_slice_comparison(
            {f"LR ({o.numbers['lr_voxel_nm']:g} nm voxels)": o.densities["lr"],
             f"HR ({o.numbers['hr_voxel_nm']:g} nm)": o.densities["hr"],
             f"truth on the HR voxels ({o.numbers['hr_voxel_nm']:g} nm)": o.densities["truth"]},
            elements=SLICE_ELEMENTS,
            title=f"S5, {o.optic.name}: central z slices of dataset a's LR and HR volumes and of the truth,\n"
                  "one colour scale per element") for o in optics]]),
        "S6": _grid([[plot_psd(o.psd["lr"], o.psd["hr"], o.psd["truth"],
                               labels=["LR", "HR", f"ground truth ({o.optic.truth_voxel_nm:g} nm voxels)"],
                               layout="items",
                               title=f"S6, {o.optic.name}: PSD of dataset a's LR and HR volumes and of "
                                     "the truth") for o in optics]]),
        "C1": _grid([[consistency_figure(optics)]]),
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
        "S5": "Central slices (normal to the rotation axis) of the FBP reconstructions of dataset a, LR and HR, "
              "and of the ground truth averaged onto the HR voxels, all in counts per (10 nm)³ of sample: a "
              "reconstruction holds counts per voxel length, so LR and HR voxels of different sizes are "
              "converted by their own voxel (see Units below). Each element's panels share one colour scale.",
        "S6": "Shell-averaged power spectral density (log-spaced shells) of the LR and HR volumes of dataset a and of "
              "the ground truth on its own, finer voxels, one panel per element (Co and Mn have equal "
              "concentrations in NMC622, and their curves would hide each other on one axis). The PSD is per unit "
              "volume and the "
              "volumes are in counts per (10 nm)³, so equal content gives equal curves: where LR or HR lies "
              "below the truth, detail is lost; above it, noise or invented detail is added.",
        "C1": "Not in the paper. For one projection of dataset a per optic: the measured LR map; the Poisson "
              "deviance per scan pixel of the enhanced (HR) map and of the refined HR map against it, after "
              "pushing each through the scan (probe blur, fly-scan smear, sampling: the fitted probe); the "
              "profile across the particle's left edge of the ground truth (the noise-free projection the "
              "scan saw, on its 4x finer grid), LR, HR and refined HR, in counts per (10 nm)² of projected "
              "area, averaged over the marked rows; and how the mean deviance and the RMS error against the "
              "ground truth change with the refinement iterations N. Deviance is dimensionless: about 1 per "
              "pixel where the map predicts the counts within Poisson noise, less where counts are few (the "
              "expectation is printed above each map); bright pixels mark where the map contradicts the "
              "measurement. The rim overshoot in the legend, and the inset's excess over the truth against the "
              "distance from the outline, average the whole outline of every projection checked (see the "
              "consistency table); the profile is one line of one projection.",
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
        ["LR rows (slices)", (f"{settings['rows']} (at least the model's receptive field, "
                              f"{settings.get('receptive_field_px', '?')} LR pixels)")],
        ["projections per dataset (a and b interleaved over 180°)", str(settings["angles"])],
        ["scan", (f"{settings['scan_mode']}, Poisson counts ({settings['counts']:g} Ni counts per ground-truth "
                  f"voxel in dense grains), jitter 5 % of the step, stage drift {settings['drift_nm']:g} nm rms")],
        ["optics", "; ".join(f"{o.optic.name}: probe {o.optic.probe_nm:g} nm, step {o.optic.step_nm:g} nm, "
                             f"ground truth {o.optic.truth_voxel_nm:g} nm voxels" for o in optics)],
        ["model", f"{model_name} ({card['parameters']} parameters, weights sha256 {card['weights_sha256'][:16]}…)"],
        ["consistency check", (f"{settings.get('check_projections')} projections of dataset a, fitted probe; "
                               f"refinement {settings.get('refine_iterations')!r} (discrepancy principle), weight 1")],
        ["reconstruction", (f"{settings['algorithm'].upper()} (xrfsr_dask.tomo, NUFFT backend), after "
                            "projection-matching alignment of the LR series; the same nm shifts applied to HR")],
        ["seed", str(settings["seed"])],
        ["xrfsr_dask", settings["library_version"]],
    ])
    consistency = _table(
        ["optic", "data", "mean deviance", "Poisson noise alone", "excess", "count ratio (forward / measured)",
         "total-count ratio", "RMS error against the truth", "edge overshoot (% of step height)"],
        [row for o in optics for row in _consistency_rows(o)],
    )
    c0 = optics[0].numbers["consistency"]
    figures_html = "".join(
        f'<figure><img src="{name}.png" alt="{_ALT[name[0]]} {name[1]}">'
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
resolution limit, a half period of 1 voxel). The deviance and total-count rows check the enhanced
projections against the measured counts (the paper did not); the section "Consistency with the measured
counts" explains them, and the ground-truth column there is the noise-free projection the scan saw.</p>
<h2>FSC of enhanced data</h2>
<p>The HR row "this run" is, as in the paper, an FSC between two enhanced datasets.</p>
{_fsc_html(optics)}
{fsc_warnings}
<h2>Why this run's numbers differ from the paper's</h2>
{_gaps_html(run, card)}
<h2>Consistency with the measured counts</h2>
{consistency}
<p><b>How to read it.</b> Ni, {c0['projections']} projections of dataset a spread over 180°, each enhanced
map pushed through the scan that measured it (the fitted probe, the fly-scan smear, sampling at the scan
points) and compared with the measured counts. <i>Mean deviance</i>: the Poisson deviance
2[y log(y/μ) − (y − μ)] per scan pixel, dimensionless; <i>Poisson noise alone</i>: what a map that predicts
the counts exactly would give (about 1 above ~10 counts, less where counts are few, as outside the
particle); <i>excess</i>: their difference, about 0 when consistent, positive where the map contradicts the
measurement, negative where it reproduces the measurement's own noise. <i>Count ratio</i>: forward-projected
over measured counts; <i>total-count ratio</i>: mean of the enhanced map over mean of the measured map (both
1 when counts are conserved). <i>RMS error against the truth</i>: against the noise-free projection the scan
saw, binned onto the HR grid (LR: onto the scan grid), relative to its RMS. <i>Edge overshoot</i>: the bright rim
at the particle's surface. Every pixel near the particle's outline (where the truth exceeds 5 % of its
maximum) in every projection checked is binned by its distance from the outline; the excess of the map over
the truth, averaged per distance, is divided by the step height (the truth's mean one to two scan steps
inside), and the overshoot is its largest value within two scan steps inside (the inset of figure C1 shows
the whole curve); the truth is the reference, 0. The
refined maps are what <code>enhance(..., refine={c0['refine_iterations']!r})</code> returns:
MAP-EM updates toward the Poisson likelihood of the measurement with weight 1
(<code>xrfsr_dask.consistency.refine</code>, run on the stored network output), each projection and element
stopped where its mean deviance meets what Poisson noise alone gives (the discrepancy principle): a map
refined further would fit the noise. The last panel of figure C1 refines the projection shown
{", ".join(str(e["iterations"]) for e in c0["refine_ladder"])} times for comparison;
{html.escape(_settled(optics))}</p>
<h2>Units</h2>
<p>Every map, profile and volume in figures S5, S6 and C1 is on one physical scale, so LR, HR and the ground
truth compare directly. The simulated scan records at each point the counts of a column one ground-truth
voxel wide under the probe; counts per scan point divided by that voxel's area are counts per unit area of
the projection, shown as counts per (10 nm)² for LR, HR and truth alike. A reconstruction holds those counts
per voxel length (its sum along a ray gives the projection back), so dividing by its own voxel as well gives
counts per (10 nm)³ of sample — the ground truth's counts per voxel divided by its voxel volume. Left in
counts per voxel, the LR volume (voxels twice as long as HR's) would read about twice the HR values and its
PSD four times higher, for the same sample.</p>
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
