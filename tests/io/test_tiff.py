"""Multi-page TIFF with a JSON or YAML sidecar."""

import json

import numpy as np
import pytest

from xrfsr_dask import IngestError, SchemaError, read
from xrfsr_dask.testing import particles, write_tiff

META = {"elements": ["Ni_K", "Co_K"], "step_nm": [30, 20], "origin_nm": [10, 5], "scan_mode": "step",
        "probe_fwhm_nm": 24.7, "dwell_s": 0.02}


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_reads_pages_as_elements(tmp_path, fmt):
    maps = particles((9, 11), 2, seed=5)
    write_tiff(tmp_path / "m.tif", maps, META, sidecar_format=fmt)
    da = read(tmp_path / "m.tif")
    np.testing.assert_array_equal(da.values, maps)
    assert da.attrs["probe_fwhm_nm"] == 24.7 and da.attrs["step_nm"] == [30.0, 20.0]
    assert float(da.x[1]) == 25.0


def test_missing_sidecar_names_where_it_looked(tmp_path):
    write_tiff(tmp_path / "m.tif", particles((4, 4), 2, seed=1), META)
    (tmp_path / "m.tif.json").unlink()
    with pytest.raises(IngestError, match=r"no metadata sidecar found; looked for \['m.tif.json'"):
        read(tmp_path / "m.tif")


def test_sidecar_typos_and_page_count(tmp_path):
    path = write_tiff(tmp_path / "m.tif", particles((4, 4), 2, seed=1), {**META, "stepnm": 3})
    with pytest.raises(IngestError, match=r"unknown sidecar keys \['stepnm'\]"):
        read(path)
    path.with_name("m.tif.json").write_text(json.dumps({**META, "elements": ["Ni_K"]}))
    with pytest.raises(IngestError, match=r"TIFF has shape \(2, 4, 4\).*names 1 elements"):
        read(path)
    path.with_name("m.tif.json").write_text(json.dumps({**META, "scan_mode": "spiral"}))
    with pytest.raises(SchemaError, match=r"scan_mode'\] = 'spiral'"):
        read(path)


def test_implausible_sidecars_are_refused_with_the_fix(tmp_path):
    path = write_tiff(tmp_path / "m.tif", particles((4, 4), 2, seed=1), {**META, "elements": ["Ni", "Mo"]})
    with pytest.raises(IngestError, match=r"element 'Mo' names no emission line, and Mo has 2 in the XRF range: "
                                          r"Mo_K \(17\.479 keV\), Mo_L \(2\.293 keV\)\. Write the one"):
        read(path)
    path.with_name("m.tif.json").write_text(json.dumps({**META, "elements": ["Fe", "Mo_L"]}))
    assert read(path).line.values.tolist() == ["K", "L"]  # Fe has one line in the table: the K line
    path.with_name("m.tif.json").write_text(json.dumps({**META, "step_nm": 0.05}))
    with pytest.raises(SchemaError, match=r"step_nm'\] = \[0\.05, 0\.05\] nm is finer than 0\.5 nm.*"
                                          r"\(step_nm=\[50\.0, 50\.0\]\)"):
        read(path)


def test_not_a_tiff(tmp_path):
    path = tmp_path / "m.tif"
    path.write_bytes(b"not a tiff at all")
    path.with_name("m.tif.json").write_text(json.dumps(META))
    with pytest.raises(IngestError, match=r"not a readable TIFF"):
        read(path)
