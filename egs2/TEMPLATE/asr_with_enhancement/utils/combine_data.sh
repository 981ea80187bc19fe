#!/usr/bin/env bash
# combine_data.sh [--extra_files "f1 f2 ..."] <dst> <src1> [<src2> ...]: concatenate, sort, regenerate spk2utt, fix
# Implemented in pyscripts/utils/data_dir.py (combine_main); needs only python3's standard library.
exec python3 -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from pyscripts.utils.data_dir import combine_main; sys.exit(combine_main(sys.argv[1:]))' \
  "$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)" "$@"
