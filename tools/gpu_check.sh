#!/usr/bin/env bash
# The GPU check on a machine where nothing can be installed from a registry (e.g. a lent GPU machine with no network):
# finds a Python that has torch with CUDA (this repo's .venv, the system's python3, /opt/torch/.venv, ...), installs
# nothing when soundlab's imports are all there, else only the missing ones from wheels carried in .gpu/wheels (never
# torch), points SOUNDLAB_FIXTURES at .gpu/fixtures if carried, and runs tools/gpu_check.py with the arguments given.
#
#   tools/gpu_check.sh --prepare [--python-version 3.12]   # HERE, with a registry: .gpu/wheels + .gpu/fixtures (a few MB)
#   bash tools/gpu_check.sh [--copy-to DIR] [gpu_check.py arguments]   # THERE, on the GPU machine (.gpu carried along)
#
# Environment: SOUNDLAB_PYTHON (the Python to use), SOUNDLAB_WHEELS (another wheel folder), SOUNDLAB_SITE (where missing
# wheels are unpacked; default /tmp/soundlab-site).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WHEELS=${SOUNDLAB_WHEELS:-$REPO/.gpu/wheels}
SITE=${SOUNDLAB_SITE:-/tmp/soundlab-site}
# soundlab's imports on the check's path (settings.ini requirements that are imported at module level, and pytest)
MODULES="torch torchaudio numpy scipy soundfile librosa h5py pandas sklearn matplotlib seaborn tqdm timm tabulate torch_audiomentations pytest"
# what a bare CUDA image usually lacks of them, with their own needs (torch, numpy, scipy ... are never downloaded)
WHEEL_PACKAGES="soundfile cffi pycparser librosa audioread soxr pooch platformdirs decorator lazy_loader msgpack torch-audiomentations julius torch_pitch_shift primePy"

if [[ "${1:-}" == "--prepare" ]]; then
  shift; PYV=3.12
  if [[ "${1:-}" == "--python-version" ]]; then PYV=$2; shift 2; fi
  PIP=${SOUNDLAB_PYTHON:-$REPO/.venv/bin/python}
  mkdir -p "$WHEELS" "$REPO/.gpu/fixtures/panns"
  plat=(); for n in 17 24 27 28 31 34; do plat+=(--platform "manylinux_2_${n}_x86_64"); done
  "$PIP" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp "${plat[@]}" \
      --platform manylinux2014_x86_64 -c constraints.txt -d "$WHEELS" $WHEEL_PACKAGES
  fx=$(PYTHONPATH=$REPO "$PIP" -c 'from soundlab.core import fixtures_dir; print(fixtures_dir())')
  cp "$fx/panns/R9_ZSCveAHg_7s.mp3" "$REPO/.gpu/fixtures/panns/"
  echo "prepared $(du -sh "$REPO/.gpu" | cut -f1) in .gpu: $(ls "$WHEELS" | wc -l) wheels for CPython $PYV, the PANNs fixture clip"
  echo "carry .gpu to the GPU machine (it is git-ignored) and run there: bash tools/gpu_check.sh"
  exit 0
fi

dry=0; for a in "$@"; do [[ "$a" == "--dry-run" ]] && dry=1; done
py=""; tried=()
for cand in "${SOUNDLAB_PYTHON:-}" "$REPO/.venv/bin/python" python3 /opt/torch/.venv/bin/python3 /usr/bin/python3 python; do
  [[ -n "$cand" ]] && command -v "$cand" >/dev/null 2>&1 || continue
  tried+=("$cand")
  if "$cand" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null; then py=$cand; break; fi
  if [[ $dry == 1 ]] && "$cand" -c 'import torch' 2>/dev/null; then py=$cand; break; fi
done
if [[ -z "$py" ]]; then
  echo "gpu_check.sh: no Python with torch$([[ $dry == 0 ]] && echo ' and a CUDA device') among: ${tried[*]:-none}" >&2
  echo "  (set SOUNDLAB_PYTHON, or run 'make install' where a registry is reachable)" >&2; exit 2
fi
echo "gpu_check.sh: $py ($("$py" -c 'import torch, sys; print(sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda)'))"

missing() { "$py" - "$@" <<'EOF'
import importlib.util, sys
print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}
need=$(missing $MODULES)
if [[ -n "$need" ]]; then
  echo "gpu_check.sh: missing $need"
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "  and no wheels in $WHEELS: run 'tools/gpu_check.sh --prepare' where a registry is reachable, carry .gpu" >&2; exit 2; }
  todo=()
  for w in "$WHEELS"/*.whl; do
    d=$(basename "$w"); d=${d%%-*}
    [[ -n "$(missing "$d")" ]] && todo+=("$w")  # only what this Python lacks: the image's own packages stay
  done
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "${todo[@]}"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  need=$(missing $MODULES)
  [[ -z "$need" ]] || { echo "gpu_check.sh: still missing $need after installing ${#todo[@]} wheels into $SITE" >&2; exit 2; }
  echo "gpu_check.sh: installed ${#todo[@]} wheels into $SITE"
fi
[[ -z "${SOUNDLAB_FIXTURES:-}" && -d "$REPO/.gpu/fixtures" ]] && export SOUNDLAB_FIXTURES="$REPO/.gpu/fixtures"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$py" tools/gpu_check.py "$@"
