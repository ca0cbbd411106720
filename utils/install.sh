#!/usr/bin/env bash
# Installs what speechtl needs on a fresh Debian machine; a second run skips what is done.
#   1. apt packages the recipes use (as root; otherwise prints the command to run)
#   2. .venv with torch==2.11.0 and torchaudio==2.11.0 installed together and first
#   3. pip install -e .[dev]  (skipped while setup.cfg and the constraints are unchanged)
# The versions come from utils/constraints.txt (what the suite last passed on, on CPython 3.11);
# SPEECHTL_CONSTRAINTS=/abs/file takes another, and SPEECHTL_CONSTRAINTS= (empty) none: a new venv
# then gets the newest that setup.cfg's ranges allow (an existing one keeps what satisfies them).
set -euo pipefail
case "${1:-}" in  # the header above is the help: --help must not start or install anything
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
venv=${VENV:-.venv}
python=${PYTHON:-python3}
torch_version=2.11.0
constraints=${SPEECHTL_CONSTRAINTS-utils/constraints.txt}  # relative: to the repository root
pip_constraints=()
if [ -n "$constraints" ]; then
  [ -f "$constraints" ] || { echo "[install] ERROR: constraints file $constraints not found. Fix: SPEECHTL_CONSTRAINTS=/abs/path, or empty for none" >&2; exit 1; }
  pip_constraints=(-c "$constraints")
  if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "[install] WARNING: utils/constraints.txt was tested on CPython 3.11, this is $("$python" -V 2>&1); if pip cannot" \
      "resolve a pinned version, rerun with SPEECHTL_CONSTRAINTS= (the newest within setup.cfg's ranges)" >&2
  fi
fi
apt_packages="sox libsndfile1 espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts"

log() { echo "[install] $*"; }

missing=()
for p in $apt_packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    log "WARNING: missing apt packages: ${missing[*]}"
    log "         install them with: sudo apt-get install ${missing[*]}"
  fi
fi

need_torch() {
  ! "$venv/bin/python" -c "import torch, torchaudio, sys; sys.exit(not (torch.__version__.split('+')[0] == '$torch_version' and torchaudio.__version__.split('+')[0] == '$torch_version'))" 2>/dev/null
}
# torch's Linux wheel pulls its CUDA libraries (nvidia-*, triton): 4.6 GB unpacked; with pip's scratch the
# install peaked at 6.5 GB (2026-12-06, no cache). Stop before that, not minutes in with an OSError.
torch_need_gb=${SPEECHTL_TORCH_SPACE_GB:-7}
free_gb() {  # free GB on the filesystem that holds $1 (its nearest existing parent)
  local dir=$1
  until [ -d "$dir" ]; do dir=$(dirname "$dir"); done
  df -Pk "$dir" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'
}
if need_torch && [ "$torch_need_gb" -gt 0 ]; then
  tmp_dir=${TMPDIR:-/tmp}
  for dir in "$venv" "$tmp_dir"; do
    have=$(free_gb "$dir")
    if [ -n "$have" ] && [ "$have" -lt "$torch_need_gb" ]; then
      echo "[install] ERROR: torch==$torch_version with its CUDA libraries needs about $torch_need_gb GB free for $dir," \
        "and its disk has $have GB. Fix: free space there, or put the venv or pip's scratch on a larger disk" \
        "(VENV=/big/disk/venv make test, TMPDIR=/big/disk/tmp); SPEECHTL_TORCH_SPACE_GB=0 skips this check" >&2
      exit 1
    fi
  done
fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
if need_torch; then
  log "torch==$torch_version torchaudio==$torch_version (first, together; not kept in pip's cache, which would double its disk use)"
  "$venv/bin/python" -m pip install --no-cache-dir ${pip_constraints[@]+"${pip_constraints[@]}"} "torch==$torch_version" "torchaudio==$torch_version"
fi

stamp="$venv/.speechtl-install"
want=$(cat setup.cfg pyproject.toml ${constraints:+"$constraints"} | cksum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$venv/bin/python" -c "import speechtl" 2>/dev/null; then
  log "pip install -e .[dev]"
  "$venv/bin/python" -m pip install -q ${pip_constraints[@]+"${pip_constraints[@]}"} -e ".[dev]"
  echo "$want" > "$stamp"
fi
# mp3 (Common Voice clips) and opus decode through soundfile's libsndfile (>= 1.1): its pip wheels
# bundle one; a soundfile built against an older system libsndfile gets the wheel instead.
mp3_check="import soundfile, sys; sys.exit('MP3' not in soundfile.available_formats())"
if ! "$venv/bin/python" -c "$mp3_check" 2>/dev/null; then
  log "soundfile cannot decode mp3: installing its wheel, which bundles libsndfile >= 1.1"
  "$venv/bin/python" -m pip install -q ${pip_constraints[@]+"${pip_constraints[@]}"} --force-reinstall --only-binary soundfile "soundfile>=0.12.1"
  "$venv/bin/python" -c "$mp3_check" || log "WARNING: mp3 still not decodable; Common Voice imports will fail"
fi
log "ready: $("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)')"
