"""Figures: each returns a Figure with labelled axes (units), legends and scale bars."""

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from xrfsr_dask import GaussianProbe, fit_probe, nmc_particle, simulate_scan
from xrfsr_dask.metrics import frc, psd
from xrfsr_dask.plot import (
    plot_frc,
    plot_fsc,
    plot_loss_curves,
    plot_probe_fit,
    plot_psd,
    plot_slice_comparison,
    plot_slices,
)


@pytest.fixture(scope="module")
def maps():
    truth = nmc_particle((128, 128), pixel_nm=10.0, seed=2)
    scans = [simulate_scan(truth, step_nm=20.0, probe=GaussianProbe(50.0), noise=True, seed=s) for s in (1, 2)]
    return truth, scans


def _scale_bars(ax):
    return [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]


def test_frc_figure_marks_crossings_in_nm(maps, tmp_path):
    _, (a, b) = maps
    result = frc(a, b)
    fig = plot_frc(result)
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and plot_frc is plot_fsc
    assert ax.get_xlabel() == "spatial frequency (1/nm)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "half-bit threshold" in labels
    # Crossings are listed as half periods 1/(2f) by default, and the figure says so.
    ni = float(result.resolution_half_period_nm.sel(element="Ni_K", threshold="half-bit"))
    assert any(f"Ni_K: half-bit {ni:.1f} nm" in text for text in labels)
    assert "half-period 1/(2f)" in fig.legends[0].get_title().get_text()
    top = [child for child in ax.child_axes if "resolution" in child.get_xlabel()]
    assert top[0].get_xlabel() == "half-period resolution 1/(2f) (nm)"
    # One circle per finite crossing, on top of the curves and threshold lines.
    circles = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(circles) == int(np.isfinite(result.crossing_frequency).sum())
    full = plot_frc(result, period="full")
    full_ni = float(result.resolution_full_period_nm.sel(element="Ni_K", threshold="half-bit"))
    assert full_ni == pytest.approx(2 * ni)
    assert any(f"Ni_K: half-bit {full_ni:.1f} nm" in t.get_text() for t in full.legends[0].get_texts())
    assert "full-period 1/f" in full.legends[0].get_title().get_text()
    with pytest.raises(ValueError, match="period must be 'half' or 'full'; got 'quarter'"):
        plot_frc(result, period="quarter")
    fig.savefig(tmp_path / "frc.png")
    assert (tmp_path / "frc.png").stat().st_size > 10_000


def test_psd_figure_is_log_log_with_one_line_per_element(maps):
    truth, (a, _) = maps
    fig = plot_psd(psd(a, bins="log"), psd(truth, bins="log"), labels=["LR", "HR"])
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_ylabel() == "PSD (counts² nm²)"
    assert len(ax.get_legend().get_texts()) == 2 * a.sizes["element"]
    # Elements whose curves coincide stay apart: a marker of its own per element.
    markers = {line.get_label().split(" ", 1)[1]: line.get_marker() for line in ax.get_lines()}
    assert len(set(markers.values())) == a.sizes["element"]
    with pytest.raises(ValueError, match="labels"):
        plot_psd(psd(a), labels=["LR", "HR"])
    with pytest.raises(ValueError, match="layout must be 'overlay' or 'items'; got 'grid'"):
        plot_psd(psd(a), layout="grid")


def test_psd_figure_with_one_panel_per_element(maps):
    truth, (a, _) = maps
    fig = plot_psd(psd(a, bins="log"), psd(truth, bins="log"), labels=["LR", "HR"], layout="items", title="PSD")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [str(e) for e in a.element.values]
    assert all(len(ax.get_lines()) == 2 for ax in panels)
    assert [t.get_text() for t in panels[0].get_legend().get_texts()] == ["LR", "HR"]
    # Shared axes: one scale, so equal content reads as equal curves in every panel.
    assert panels[0].get_shared_y_axes().joined(panels[0], panels[-1])
    assert panels[-1].get_xlabel() == "spatial frequency (1/nm)"


def test_slice_comparison_has_a_row_per_volume_and_one_scale_per_element(maps):
    truth, (a, _) = maps
    volume = truth.expand_dims(z=np.arange(3) * 10.0).transpose("element", "z", "y", "x")
    volume.attrs["units"] = "counts / (10 nm)³"
    noisy = volume + np.random.default_rng(0).normal(scale=5.0, size=volume.shape)
    noisy.attrs["units"] = volume.attrs["units"]
    fig = plot_slice_comparison({"LR": noisy, "truth": volume}, elements=["Ni_K", "Mo_L"], title="slices")
    panels = [ax for ax in fig.axes if ax.get_title()]
    # Row by row: the volumes are the rows, the elements the columns.
    assert [ax.get_title().split(",")[0] for ax in panels] == ["LR: Ni_K", "LR: Mo_L", "truth: Ni_K", "truth: Mo_L"]
    assert all(len(_scale_bars(ax)) == 1 for ax in panels)
    # Each element's panels share one colour scale and one colour bar in the data's units.
    limits = [ax.get_images()[0].get_clim() for ax in panels]
    assert limits[0] == limits[2] and limits[1] == limits[3] and limits[0] != limits[1]
    bars = [ax.get_xlabel() for ax in fig.axes if not ax.get_title() and ax.get_xlabel()]
    assert bars == ["Ni_K (counts / (10 nm)³)", "Mo_L (counts / (10 nm)³)"]
    assert "z = 10 nm" in panels[0].get_title()
    other = volume.copy()
    other.attrs["units"] = "counts"
    with pytest.raises(ValueError, match="different units"):
        plot_slice_comparison({"a": volume, "b": other})
    with pytest.raises(ValueError, match="not in volume 'LR'"):
        plot_slice_comparison({"LR": volume}, elements=["Fe"])


def test_probe_fit_figure_has_scale_bar_and_profiles():
    probe = GaussianProbe((60.0, 40.0), angle_deg=20.0)
    y = np.arange(-32, 32) * 5.0
    image = xr.DataArray(probe.image(y, y), dims=("y", "x"), coords={"y": y, "x": y})
    fig = plot_probe_fit(image, fit_probe(image))
    left = fig.axes[0]
    right = next(ax for ax in fig.axes if ax.get_legend() is not None)
    assert "FWHM 60.0 × 40.0 nm" in left.get_title()
    assert [bar.txt_label.get_text() for bar in _scale_bars(left)] == ["50 nm"]
    assert right.get_xlabel() == "position (nm)"


def test_slices_figure_per_element_with_scale_bars(maps):
    truth, _ = maps
    volume = truth.expand_dims(z=np.arange(3) * 10.0).transpose("element", "z", "y", "x")
    fig = plot_slices(volume, elements=["Ni_K", "Mo_L"])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["Ni_K", "Mo_L"]
    assert all(len(_scale_bars(ax)) == 1 for ax in panels)
    assert panels[0].get_xlabel() == "x (nm)"
    with pytest.raises(ValueError, match="not in the data"):
        plot_slices(volume, elements=["Fe"])


def test_loss_curves_from_dataset_and_csv(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,train,validation,test\n1,0.3,0.35,0.36\n2,0.2,0.25,0.27\n3,0.1,0.2,0.22\n")
    fig = plot_loss_curves(path)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "validation", "test"]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.35, 0.25, 0.2])
    bad = tmp_path / "bad.csv"
    bad.write_text("step,train\n1,0.3\n")
    with pytest.raises(ValueError, match="'epoch' column"):
        plot_loss_curves(bad)
