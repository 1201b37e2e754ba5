#!/usr/bin/env bash
# Check bigmodel on a machine with an NVIDIA GPU and no internet: start a GPU worker, train and serve
# through the queue, and print throughput next to the CPU pool's (python -m bench.gpu_check).
#
#   bench/gpu_check.sh [--wheels DIR] [--redis-server PATH] [--python PATH] [--quick]
#
# It uses the frameworks already installed for that Python (a venv with --system-site-packages) and
# installs what is missing from DIR, a folder of wheels made beforehand with bench/gpu_wheels.sh where
# a package index is reachable. redis-server: --redis-server, else PATH, else the `redis-server` wheel.
# With no GPU it says so and exits 0. Everything it writes goes under var/gpu-check/.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

wheels="" redis_bin="" python="${PYTHON:-python3}" quick=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels="${2:?--wheels needs a folder}"; shift 2 ;;
    --redis-server) redis_bin="${2:?--redis-server needs a path}"; shift 2 ;;
    --python) python="${2:?--python needs a path}"; shift 2 ;;
    --quick) quick="--quick"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists none): nothing to check."
  exit 0
fi
echo "gpu_check: $(nvidia-smi -L | head -n 4 | tr '\n' ' ')"

cd "$(dirname "$0")/.."
work="var/gpu-check"
venv="$work/venv"
mkdir -p "$work"
if [ -n "$wheels" ] && [ ! -d "$wheels" ]; then
  echo "gpu_check: no wheel folder at $wheels" >&2
  exit 2
fi
pip_offline=(--no-index --disable-pip-version-check -q)
[ -n "$wheels" ] && pip_offline+=(--find-links "$wheels")

# The machine's own frameworks (TensorFlow with CUDA) stay visible; bigmodel and its small
# dependencies come from the wheel folder. Nothing is fetched from a network.
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install "${pip_offline[@]}" -e . || {
  echo "gpu_check: could not install bigmodel's dependencies offline; make a wheel folder with" >&2
  echo "           bench/gpu_wheels.sh --python-version $("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" >&2
  exit 1
}
if ! "$venv/bin/python" -c "import tensorflow" 2>/dev/null; then
  echo "gpu_check: TensorFlow is not installed for $python; installing tensorflow[and-cuda] from the wheels"
  "$venv/bin/python" -m pip install "${pip_offline[@]}" "tensorflow[and-cuda]>=2.16" || {
    echo "gpu_check: no TensorFlow to use (make the wheel folder with gpu_wheels.sh --with-tensorflow)" >&2
    exit 1
  }
fi
gpus=$(TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -c \
  "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null | tail -n 1)
if [ "${gpus:-0}" = "0" ]; then
  echo "gpu_check: nvidia-smi lists a GPU but TensorFlow sees none (a CPU-only TensorFlow, or CUDA" >&2
  echo "           libraries missing); install tensorflow[and-cuda] from the wheel folder." >&2
  exit 1
fi

if [ -z "$redis_bin" ]; then
  redis_bin=$(command -v redis-server || true)
fi
if [ -z "$redis_bin" ] && [ -n "$wheels" ]; then
  "$venv/bin/python" -m pip install "${pip_offline[@]}" redis-server >/dev/null 2>&1 || true
  redis_bin=$("$venv/bin/python" -c "import redis_server; print(redis_server.REDIS_SERVER_PATH)" 2>/dev/null || true)
fi
if [ -z "$redis_bin" ] || [ ! -x "$redis_bin" ]; then
  echo "gpu_check: no redis-server: pass --redis-server PATH, put one on PATH, or add the" >&2
  echo "           redis-server wheel to the folder (gpu_wheels.sh does)." >&2
  exit 1
fi
bin_dir="$work/bin"
mkdir -p "$bin_dir"
ln -sf "$(cd "$(dirname "$redis_bin")" && pwd)/$(basename "$redis_bin")" "$bin_dir/redis-server"

echo "gpu_check: TensorFlow sees $gpus GPU(s); redis-server: $redis_bin"
PATH="$PWD/$bin_dir:$PATH" TF_CPP_MIN_LOG_LEVEL=2 \
  timeout 290 "$venv/bin/python" -m bench.gpu_check --out "$work" $quick
