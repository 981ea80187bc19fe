#!/usr/bin/env bash
# Sourced by recipes' path.sh (ESPnet convention): activates tools/venv.
# The venv's espnet_gr_overlay.pth puts this repository first on sys.path.
_tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -f "${_tools_dir}/venv/bin/activate" ]; then
    echo "tools/venv not found: run ${_tools_dir}/setup.sh first" >&2
    return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "${_tools_dir}/venv/bin/activate"
unset _tools_dir
