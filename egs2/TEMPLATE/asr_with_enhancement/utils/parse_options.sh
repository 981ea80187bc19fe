# shellcheck shell=bash
# Kaldi-style option parsing for recipe scripts.  SOURCE this file (bash), after defining a shell
# variable with a default for every option the script accepts:
#
#     nj=4; use_lm=true; help_message="Usage: $0 [--nj N] [--use_lm true|false] <dir>"
#     . utils/parse_options.sh
#
# Behaviour:
#   * Leading arguments of the form `--opt-name value` set the variable opt_name (dashes become
#     underscores).  `--opt-name=value` is accepted too and means the same.
#   * An option whose variable is not defined is an error naming the option.  An option whose
#     current value is true/false only accepts true/false.  A missing value is an error.
#   * `--config FILE` sources FILE (an error if it is not readable) BEFORE the other options are
#     applied, so options on the command line win over the config file whatever their order.
#   * `--help` / `-h` prints $help_message and exits 0.
#   * Parsing stops at the first argument that does not start with `--` (or at a lone `--`,
#     which is removed); the remaining arguments are left in "$@".
#   * Errors are printed to stderr as "<script>: ..." and exit 1 (the calling script stops).
# Only variables named __po_* are used internally; they are unset at the end.

# 1) Config files first, so that explicit options override them.
for ((__po_i = 1; __po_i <= $#; __po_i++)); do
  __po_arg=${!__po_i}
  [[ ${__po_arg} == --* ]] || break
  [ "${__po_arg}" = -- ] && break
  __po_name=${__po_arg#--}
  __po_name=${__po_name%%=*}
  if [ "${__po_name//-/_}" = config ]; then
    if [[ ${__po_arg} == *=* ]]; then
      __po_file=${__po_arg#*=}
    else
      __po_i=$((__po_i + 1))
      if [ "${__po_i}" -gt $# ]; then
        echo "$0: option --config needs a file name" >&2
        exit 1
      fi
      __po_file=${!__po_i}
    fi
    if [ ! -r "${__po_file}" ] || [ -d "${__po_file}" ]; then
      echo "$0: config file '${__po_file}' (from --config) does not exist or is not readable" >&2
      exit 1
    fi
    # shellcheck disable=SC1090
    . "${__po_file}"
  elif [[ ${__po_arg} != *=* ]]; then
    __po_i=$((__po_i + 1))   # skip the option's value
  fi
done

# 2) The options themselves.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then
        printf '%s\n' "${help_message}"
      else
        echo "$0: no help message (the script does not define \$help_message)"
      fi
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --*)
      if [[ $1 == *=* ]]; then
        __po_opt=${1%%=*}
        __po_value=${1#*=}
        __po_shift=1
      else
        __po_opt=$1
        if [ $# -lt 2 ]; then
          echo "$0: option ${__po_opt} needs a value" >&2
          exit 1
        fi
        __po_value=$2
        __po_shift=2
      fi
      __po_name=${__po_opt#--}
      __po_name=${__po_name//-/_}
      if [ "${__po_name}" != config ]; then
        if ! [[ ${__po_name} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
          echo "$0: invalid option ${__po_opt}" >&2
          exit 1
        fi
        if [ -z "${!__po_name+set}" ]; then
          echo "$0: invalid option ${__po_opt} (the script has no variable '${__po_name}')" >&2
          exit 1
        fi
        __po_old=${!__po_name}
        if [ "${__po_old}" = true ] || [ "${__po_old}" = false ]; then
          if [ "${__po_value}" != true ] && [ "${__po_value}" != false ]; then
            echo "$0: option ${__po_opt} is boolean: expected 'true' or 'false', got '${__po_value}'" >&2
            exit 1
          fi
        fi
        if [ "${__po_name}" = cmd ] && [ -z "${__po_value}" ]; then
          echo "$0: option --cmd must not be empty" >&2
          exit 1
        fi
        printf -v "${__po_name}" '%s' "${__po_value}"
      fi
      shift "${__po_shift}"
      ;;
    *)
      break
      ;;
  esac
done

unset __po_i __po_arg __po_name __po_file __po_opt __po_value __po_shift __po_old
true  # a sourced script's status is its last command's: succeed under `set -e`
