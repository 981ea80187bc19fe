#!/usr/bin/env bash
# copy_data_dir.sh [--validate_opts "--non-print ..."] <src> <dst>: copy the standard files, then validate
# Implemented in pyscripts/utils/data_dir.py (copy_main); needs only python3's standard library.
exec python3 -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from pyscripts.utils.data_dir import copy_main; sys.exit(copy_main(sys.argv[1:]))' \
  "$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)" "$@"
