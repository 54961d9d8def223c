"""The documentation site builds with ``mkdocs build --strict`` and documents the public API.

Strict mode turns every warning into a failure: a broken link or anchor, a
cross-reference to nothing, a docstring that names a parameter the
signature lacks. The build takes a few seconds.
"""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Module -> the page of docs/ that documents it (mkdocs.yml, nav "API reference").
REFERENCE = {
    "xrfsr_dask": "reference/index.md",
    "xrfsr_dask.io": "reference/io.md",
    "xrfsr_dask.metrics": "reference/metrics.md",
    "xrfsr_dask.probe": "reference/probe.md",
    "xrfsr_dask.simulate": "reference/simulate.md",
    "xrfsr_dask.phantoms": "reference/phantoms.md",
    "xrfsr_dask.families": "reference/families.md",
    "xrfsr_dask.enhance": "reference/enhance.md",
    "xrfsr_dask.consistency": "reference/consistency.md",
    "xrfsr_dask.model": "reference/model.md",
    "xrfsr_dask.tomo": "reference/tomo.md",
    "xrfsr_dask.plot": "reference/plot.md",
    "xrfsr_dask.cluster": "reference/cluster.md",
    "xrfsr_dask.napari": "reference/napari.md",
    "xrfsr_dask.schema": "reference/schema.md",
    "xrfsr_dask.errors": "reference/errors.md",
    "xrfsr_dask.demo": "reference/demo.md",
    "xrfsr_dask.report": "reference/demo.md",
}


def _built(source: str) -> str:
    """The built page of a docs/ source file (mkdocs' directory URLs)."""
    stem = source.removesuffix(".md")
    return f"{stem}.html" if stem.endswith("index") else f"{stem}/index.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    # Material for MkDocs prints a banner about MkDocs 2.0 on every build unless told not to.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, (
        f"mkdocs build --strict failed (exit code {result.returncode}):\n{result.stderr}\n{result.stdout}"
    )
    return out


def _text(site: Path, page: str) -> str:
    path = site / page
    assert path.is_file(), f"{page} is missing from the built site"
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("index.html", "make demo"),
        ("install/index.html", "constraints.txt"),
        ("data-model/index.html", "xrfmap/detsum/xrf_fit"),
        ("concepts/chunking/index.html", "halo"),
        ("how-to/ingest/index.html", "read_series"),
        ("how-to/view/index.html", "level_for_view"),
        ("demo/index.html", "demo-output/report/index.html"),
        ("performance/index.html", "36.38"),
        ("reference/index.html", "fit_probe"),
        ("reference/probe/index.html", 'id="xrfsr_dask.probe.fit_probe"'),
        ("reference/tomo/index.html", 'id="xrfsr_dask.tomo.reconstruct.reconstruct"'),
    ],
)
def test_pages_are_built(site, page, expected):
    assert expected in _text(site, page)


def test_docstring_roles_become_links(site):
    # ``:func:`~xrfsr_dask.tomo.reconstruct``` in find_center's docstring links to reconstruct's entry.
    text = _text(site, "reference/tomo/index.html")
    assert 'href="#xrfsr_dask.tomo.reconstruct.reconstruct"' in text
    assert ":func:" not in text


@pytest.mark.parametrize("module", sorted(REFERENCE))
def test_every_public_name_is_documented(site, module):
    text = _text(site, _built(REFERENCE[module]))
    anchors = set(re.findall(r'id="([\w.]+)"', text)) | set(re.findall(r'href="[^"#]*#([\w.]+)"', text))
    names = [n for n in importlib.import_module(module).__all__ if not n.startswith("__")]
    missing = [n for n in names if not any(a.rsplit(".", 1)[-1] == n for a in anchors)]
    assert not missing, (
        f"{module}.__all__ has {missing}, which docs/{REFERENCE[module]} neither documents nor links; "
        "add them there."
    )
