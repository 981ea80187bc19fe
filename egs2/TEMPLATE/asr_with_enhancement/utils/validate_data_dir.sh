#!/usr/bin/env bash
# validate_data_dir.sh [--no-feats] [--no-text] [--no-wav] [--non-print] [--no-spk-sort] <data-dir>
# Implemented in pyscripts/utils/data_dir.py (validate_main); needs only python3's standard library.
exec python3 -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from pyscripts.utils.data_dir import validate_main; sys.exit(validate_main(sys.argv[1:]))' \
  "$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)" "$@"
