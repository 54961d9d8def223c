"""Soak the hostile-input and round-trip properties: many more hypothesis examples than `make test` runs.

Each property of ``tests/io/test_malformed_property.py`` and
``tests/io/test_roundtrip_property.py`` (local stores) runs ``--examples``
examples with no deadline; one JSON line per property: examples, seconds,
and ``failure`` (hypothesis' report of the smallest failing example) or
null. `make test` runs 40 (round trips: 20); this is the longer variant the
reliability issue asks for.

    python benchmarks/soak_properties.py [--examples 300] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

from hypothesis import settings

TESTS = Path(__file__).resolve().parents[1] / "tests" / "io"
PROPERTIES = {
    "test_malformed_property": [
        "test_malformed_pyxrf_is_refused", "test_malformed_maps_is_refused", "test_truncated_hdf5_is_refused",
        "test_random_bytes_are_refused", "test_malformed_sidecar_is_refused",
        "test_damaged_tiff_is_refused_or_read_intact", "test_damaged_store_is_refused",
    ],
    "test_roundtrip_property": ["test_local_round_trip_is_identical"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--only", nargs="*", help="property names to run (default: all)")
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    warnings.simplefilter("ignore")  # zarr's warnings about the damaged stores are expected
    for module_name, names in PROPERTIES.items():
        module = __import__(module_name)
        for name in names:
            if args.only and name not in args.only:
                continue
            test = getattr(module, name)
            test._hypothesis_internal_use_settings = settings(
                test._hypothesis_internal_use_settings, max_examples=args.examples, deadline=None
            )
            start = time.perf_counter()
            try:
                test()
                failure = None
            except Exception:  # the report is the result: keep going with the other properties
                failure = traceback.format_exc(limit=3)[-2000:]
            print(json.dumps({
                "bench": "soak_properties", "property": f"{module_name}::{name}", "examples": args.examples,
                "seconds": round(time.perf_counter() - start, 1), "failure": failure,
            }), flush=True)


if __name__ == "__main__":
    main()
