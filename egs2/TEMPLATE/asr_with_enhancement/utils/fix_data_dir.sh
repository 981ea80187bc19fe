#!/usr/bin/env bash
# fix_data_dir.sh [--utt_extra_files "f1 f2 ..."] <data-dir>: sort, keep utterances present in all files, back up to .backup/
# Implemented in pyscripts/utils/data_dir.py (fix_main); needs only python3's standard library.
exec python3 -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from pyscripts.utils.data_dir import fix_main; sys.exit(fix_main(sys.argv[1:]))' \
  "$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)" "$@"
