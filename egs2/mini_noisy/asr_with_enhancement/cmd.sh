# shellcheck shell=bash
# How recipe stages run their jobs (sourced by run.sh / enh_asr.sh, like ESPnet's cmd.sh).
#
#   train_cmd   CPU jobs (data preparation, statistics, scoring)
#   cuda_cmd    training (espnet2.bin.launch --cmd "$cuda_cmd" adds --gpu N)
#   decode_cmd  decoding / enhancement inference
#
# Select the backend with cmd_backend (edit the default below, or set it in the environment:
# `cmd_backend=slurm ./run.sh`):
#
#   local   utils/run.pl: jobs run on this machine, in parallel (--max-jobs-run N to limit).
#           Cluster options (--gpu, --mem, --num_threads, --time, --name, ...) are accepted and
#           ignored.
#   slurm   utils/slurm.pl: each call submits one sbatch array job and waits for it. Options map
#           to sbatch: --gpu N -> --gres=gpu:N (nothing for 0), --mem X -> --mem X,
#           --num_threads N -> --cpus-per-task N, --num_nodes N -> --nodes N,
#           --name X -> --job-name X, --time T -> --time T, --max-jobs-run N -> --array=a-b%N.
#           The partition is --partition P, else $SLURM_PARTITION. If conf/slurm.conf exists it
#           replaces the built-in mapping (Kaldi's slurm.pl config format, see
#           pyscripts/utils/slurm_backend.py), e.g. to send GPU jobs to another partition:
#               command sbatch --export=ALL
#               option name=* --job-name $0
#               option time=* --time $0
#               option mem=* --mem $0
#               option num_threads=* --cpus-per-task $0
#               option num_nodes=* --nodes $0
#               option gpu=0 --partition cpu
#               option gpu=* --partition gpu --gres=gpu:$0
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
  local)
    export train_cmd="utils/run.pl"
    export cuda_cmd="utils/run.pl"
    export decode_cmd="utils/run.pl"
    ;;
  slurm)
    _slurm_cmd="utils/slurm.pl"
    [ -f conf/slurm.conf ] && _slurm_cmd+=" --config conf/slurm.conf"
    export train_cmd="${_slurm_cmd}"
    export cuda_cmd="${_slurm_cmd}"
    export decode_cmd="${_slurm_cmd}"
    unset _slurm_cmd
    ;;
  *)
    echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (expected local or slurm)" >&2
    return 1 2>/dev/null || exit 1
    ;;
esac
