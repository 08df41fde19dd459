#!/usr/bin/env bash
# vsr's GPU session (issue 23): install the carried wheels, then benchmarks/gpu_session.py.
#
# On the GPU machine, from the repository root: the device tool's `run` with
#   command: bash benchmarks/gpu_session.sh --commit <git rev-parse HEAD>
#   carry: [".whl", ".gpu_clips"], timeout_s: 570
# (the script's own budget is 480 s); results in $OUT (else benchmarks/results): gpu_session.{json,md,log},
# to be copied into benchmarks/results/ and committed.
# Here, before that (once): bash benchmarks/gpu_session.sh --prepare
#   downloads the cp312 manylinux PyAV wheel into .whl/ and copies the two real clips into .gpu_clips/.
# CPU dry run:  bash benchmarks/gpu_session.sh --device cpu --quick --out-dir /tmp/dry
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
    set -e
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "av==$("$PY" -c 'import av; print(av.__version__)')"
    mkdir -p .gpu_clips
    cp ../shared/data/video/car_traffic_640x360.mp4 ../shared/data/video/cockatoo_1280x720.mp4 .gpu_clips/
    du -sh .whl .gpu_clips
    exit 0
fi

# The device has no PyAV: the carried wheel goes to /tmp/site (not where a CPU machine already has it).
if ! "$PY" -c "import av" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "no PyAV here and no wheel in .whl/ (run --prepare first)"; exit 1; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# vsr from this tree, without installing it (its pinned extras, OpenVINO and NNCF, are CPU-only).
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
OUT_DIR=${OUT:-benchmarks/results}
case " $* " in *" --out-dir "*) exec "$PY" benchmarks/gpu_session.py "$@" ;; esac
exec "$PY" benchmarks/gpu_session.py --out-dir "$OUT_DIR" "$@"
