#!/usr/bin/env bash
# show_asr_result.sh <exp_dir> [<exp_dir> ...] > RESULTS.md
# Markdown tables of every <model>/<decode_dir>/<test_set>/score_{wer,cer,ter}/result.txt below the
# given directories (see pyscripts/scoring/show_asr_result.py).
exec python3 "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../pyscripts/scoring/show_asr_result.py" "$@"
