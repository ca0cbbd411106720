#!/usr/bin/env bash
# Kaldi-style option parsing. Source it after giving every option a default:
#   stage=0; nj=2; corpus_dir=
#   . utils/parse_options.sh
# Then `--stage 3 --corpus-dir /x` sets stage=3 and corpus_dir=/x. Dashes in
# names become underscores. An option with no default variable is an error.
# `--config FILE` sources FILE first (its lines are name=value). `--help` or
# `-h` prints $help_message. Options stop at the first non-option argument.
# An option with a boolean default (true/false) only takes true/false; given alone (the last
# argument, or followed by another --option) it means true: `--skip-bad` is `--skip-bad true`.

while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help|-h)
      if [ -z "${help_message:-}" ]; then echo "No help found." 1>&2; else printf "%s\n" "$help_message" 1>&2; fi
      exit 0 ;;
    --config)
      if [ -z "${2:-}" ] || [ ! -f "$2" ]; then echo "$0: --config needs an existing file, got '${2:-}'" 1>&2; exit 1; fi
      # shellcheck disable=SC1090
      . "$2"
      shift 2 ;;
    --*=*)
      echo "$0: write '--name value', not '$1'" 1>&2; exit 1 ;;
    --*)
      name=$(echo "$1" | sed 's/^--//; s/-/_/g')
      if ! declare -p "$name" >/dev/null 2>&1; then
        echo "$0: invalid option $1 (no variable '$name' to set)" 1>&2; exit 1
      fi
      old=${!name}
      if { [ "$old" = true ] || [ "$old" = false ]; } && { [ $# -lt 2 ] || [[ "$2" == --* ]]; }; then
        printf -v "$name" '%s' true  # a boolean given alone: --skip-bad as --skip-bad true
        shift 1
        continue
      fi
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" 1>&2; exit 1; fi
      if [ "$old" = true ] || [ "$old" = false ]; then
        case "$2" in true|false) ;; *) echo "$0: option $1 takes true or false, got '$2'" 1>&2; exit 1 ;; esac
      fi
      printf -v "$name" '%s' "$2"
      shift 2 ;;
    *) break ;;
  esac
done
unset name old
true
