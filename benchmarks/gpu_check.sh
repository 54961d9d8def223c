#!/usr/bin/env bash
# Issue 11 on the GPU machine: the gpu-marked tests and every GPU figure, in one or two device calls.
#
# Here, once:   make gpu-wheels            (fills the ignored .whl/ with the wheels the GPU machine lacks)
# There:        run(command="bash benchmarks/gpu_check.sh env tests probe metrics", carry=[".whl"], timeout_s=560)
#               run(command="bash benchmarks/gpu_check.sh rdn profile enhance tomo", carry=[".whl"], timeout_s=580)
# The stage limits add up to 540 s and 560 s; expect much less. With 15 minutes of device time in all
# (start-up included), run the first call, look at summary.txt and env.jsonl, then decide on the second.
#
# Stages (in the order given; none given = all): env tests probe metrics rdn profile enhance tomo.
# Each runs under its own time limit, so one that hangs or fails costs only its limit; the others go on.
# Results land in $OUT (the device tool brings that folder back): <stage>.jsonl (the benchmark's JSON
# lines, each with the GPU's name), <stage>.log (its stderr), tests.txt and tests.xml (JUnit), summary.txt (exit
# code and seconds per stage). Copy the .jsonl files to benchmarks/results/<bench>-gpu.jsonl and commit.
#
# `SMOKE=1 bash benchmarks/gpu_check.sh ...` runs the same stages on the CPU at toy sizes: it checks the
# script and the benchmarks' plumbing on a machine without a GPU, and measures nothing worth keeping.
set -u

OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
STAGES=${*:-env tests probe metrics rdn profile enhance tomo}
PY=${PYTHON:-python3}

if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
    # The GPU machine has torch, CuPy, NumPy, SciPy, xarray and scikit-image, and is offline.
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
        2> "$OUT/install.log" || echo "installing .whl/ failed; see install.log" | tee -a "$OUT/summary.txt"
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

# stage NAME LIMIT_S COMMAND...: stdout to NAME.jsonl (tests: .txt), stderr to NAME.log, a line in summary.txt.
stage() {
    local name=$1 limit=$2 start=$SECONDS rc ext=jsonl
    shift 2
    [ "$name" = tests ] && ext=txt
    echo "== $name (at most ${limit} s): $*"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.$ext" 2> "$OUT/$name.log"
    rc=$?
    echo "$name rc=$rc $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
    [ "$rc" -eq 0 ] || tail -n 5 "$OUT/$name.log"
}

if [ "${SMOKE:-0}" = 1 ]; then
    GPU=cpu
    PROBE="--n 200 --peer-n 20 --repeat 1"
    METRICS="--sizes 64 --repeat 1"
    RDN="--repeat 1"
    PROFILE="--device cpu --precision fp32 --preset small --maps 2 --size 64"
    ENHANCE=""  # its CPU run includes the 8x-memory test (minutes): skipped
    TOMO="--device cpu --n 128 --volume-n 64 --slices 4 --repeat 1"
    TESTS="tests/test_probe.py"
else
    GPU=gpu
    PROBE="--n 10000 --peer-n 200 --repeat 3 --gpu-n 1000000"
    METRICS="--repeat 3"
    RDN="--repeat 3"
    PROFILE="--device cuda --precision bf16"
    ENHANCE="--halos 8,16 --repeat 2"
    TOMO="--slices 64 --slices-per-chunk 32 --repeat 2"
    TESTS="-m gpu tests/model/test_train.py tests/model/test_infer.py tests/metrics tests/test_enhance.py
           tests/test_probe.py tests/tomo/test_reconstruct.py"
fi

for s in $STAGES; do
    case $s in
        env) stage env 60 "$PY" - <<'EOF'
import importlib, json, platform
mods = ["torch", "cupy", "numpy", "scipy", "xarray", "dask", "distributed", "zarr", "numcodecs", "h5py",
        "tifffile", "fsspec", "yaml", "safetensors", "typer", "tqdm", "finufft", "cufinufft", "astra",
        "dask_cuda", "skimage", "pytest", "hypothesis", "xrfsr_dask"]
found = {}
for m in mods:
    try:
        found[m] = getattr(importlib.import_module(m), "__version__", "present")
    except Exception as err:  # report every missing piece at once, not the first
        found[m] = f"MISSING ({type(err).__name__}: {err})"
line = {"bench": "gpu_check.env", "python": platform.python_version(), "modules": found}
try:
    import torch
    line["cuda"] = torch.version.cuda
    line["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception as err:
    line["gpu"] = f"unknown ({err})"
print(json.dumps(line))
EOF
            ;;
        # shellcheck disable=SC2086  # the option strings are meant to split into words
        tests) stage tests 240 "$PY" -m pytest -q -p no:cacheprovider -rs --junitxml="$OUT/tests.xml" $TESTS ;;
        probe) stage probe 120 "$PY" benchmarks/probe_fit.py --device "$GPU" $PROBE ;;
        metrics) stage metrics 120 "$PY" benchmarks/metrics.py --device "$GPU" $METRICS ;;
        rdn) stage rdn 120 "$PY" benchmarks/rdn_speed.py --device "$GPU" $RDN ;;
        profile) stage profile 90 "$PY" benchmarks/profile_rdn.py $PROFILE ;;
        enhance) if [ "$GPU" = cpu ]; then echo "enhance skipped (SMOKE)" | tee -a "$OUT/summary.txt"
                 else stage enhance 150 "$PY" benchmarks/enhance.py --device "$GPU" $ENHANCE; fi ;;
        tomo) stage tomo 200 "$PY" benchmarks/tomo_gpu.py $TOMO ;;
        *) echo "unknown stage $s; stages: env tests probe metrics rdn profile enhance tomo" >&2; exit 2 ;;
    esac
done
echo "device=$GPU stages=$STAGES" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
