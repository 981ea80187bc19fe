#!/usr/bin/env bash
# Set up the project's Python environment in tools/venv.
#
# Idempotent and safe to interrupt: every step checks what is already there,
# and the stamp that lets a re-run skip pip is written only after the final
# import check passed. A second run with nothing changed takes seconds.
#
# Usage: tools/setup.sh [--python python3.11] [--no-system]
#   --python     interpreter used to create the venv (must be Python 3.11)
#   --no-system  never try to install Debian packages (sctk for sclite)
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(dirname "${tools_dir}")
venv="${tools_dir}/venv"
requirements="${tools_dir}/requirements.txt"
stamp="${venv}/.setup_stamp"
python=python3.11
system=true

while [ $# -gt 0 ]; do
    case "$1" in
        --python) python=$2; shift 2 ;;
        --no-system) system=false; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "$0: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "[setup] $*"; }

# 1. Optional system packages (sclite from Debian's sctk), only as root with apt.
if ${system}; then
    if command -v sclite >/dev/null 2>&1 || [ -x /usr/lib/sctk/bin/sclite ]; then
        :
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian package sctk (sclite)"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sctk; } >/dev/null 2>&1; then
            log "apt-get install sctk failed; scoring falls back to the built-in sclite-compatible scorer"
        fi
    else
        log "sclite not installed and not root with apt: scoring uses the built-in sclite-compatible scorer"
    fi
fi

# 2. The virtual environment (re-created when a previous run left it broken).
if [ -x "${venv}/bin/python" ] && ! "${venv}/bin/python" -c "" >/dev/null 2>&1; then
    log "removing a broken ${venv}"
    rm -rf "${venv}"
fi
if [ ! -x "${venv}/bin/python" ]; then
    if ! command -v "${python}" >/dev/null 2>&1; then
        echo "[setup] ERROR: ${python} not found; install Python 3.11 or pass --python" >&2
        exit 1
    fi
    log "creating ${venv} with $(${python} --version)"
    "${python}" -m venv "${venv}"
fi
"${venv}/bin/python" - <<'EOF'
import sys
if sys.version_info[:2] != (3, 11):
    sys.exit(f"[setup] ERROR: tools/venv runs Python {sys.version.split()[0]}; 3.11 is required (remove tools/venv and pass --python)")
EOF

# 3. The overlay: put the repository root first on sys.path of the venv.
#    A .pth line that starts with "import" is executed at start-up.
site_packages=$("${venv}/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
pth="${site_packages}/espnet_gr_overlay.pth"
pth_line="import sys; sys.path.insert(0, '${repo_root}')"
if [ "$(cat "${pth}" 2>/dev/null)" != "${pth_line}" ]; then
    log "writing ${pth}"
    echo "${pth_line}" > "${pth}.tmp" && mv "${pth}.tmp" "${pth}"
fi

# 4. Pinned packages, skipped when the stamp matches the pins.
want="$(sha256sum "${requirements}" | cut -d' ' -f1)"
if [ "$(cat "${stamp}" 2>/dev/null)" != "${want}" ]; then
    rm -f "${stamp}"
    log "installing the pinned packages of ${requirements} (first time: a few minutes, about 5 GB)"
    # grep drops pip's notes about this machine's unused local index folders; pipefail keeps pip's status.
    pip_install() {
        "${venv}/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
            | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    }
    # pip newer than 24.x refuses espnet's ci_sdr dependency (a URL requirement in one of its extras).
    pip_install "pip==24.0"
    pip_install -r "${requirements}"
fi

# 5. Import check; only a passing check writes the stamp.
(cd / && OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore "${venv}/bin/python" - <<'EOF'
import importlib.metadata as md
import espnet2.tasks.enh_s2t  # noqa: F401  (installed ESPnet)
import espnet2.train.trainer_gradient_remedy  # noqa: F401  (this repository's overlay)
names = ["torch", "torchaudio", "espnet", "sentencepiece", "kaldiio", "soundfile",
         "pystoi", "mir_eval", "espeakng-loader", "matplotlib", "tensorboard", "transformers",
         "pytest", "hypothesis"]
print("[setup] " + ", ".join(f"{n} {md.version(n)}" for n in names))
EOF
) 2>&1 | grep -v -e "nltk_data" -e "Flash Attention"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "[setup] ERROR: the import check failed" >&2; exit 1; }
echo "${want}" > "${stamp}"
log "done: source tools/activate_python.sh to use the environment"
