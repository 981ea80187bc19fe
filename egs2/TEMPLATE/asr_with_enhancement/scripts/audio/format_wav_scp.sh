#!/usr/bin/env bash
# format_wav_scp.sh [--nj N] [--cmd "utils/run.pl"] [--fs 16k] [--audio-format wav|flac]
#                   [--out-filename wav.scp] [--ref-channels 0] <in.scp> <outdir> [<logdir> [<audiodir>]]
# Resample/convert every entry of in.scp into outdir (see pyscripts/audio/format_wav_scp.py).
# Runs with the python3 of the recipe's environment (path.sh activates it).
exec python3 "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../pyscripts/audio/format_wav_scp.py" "$@"
