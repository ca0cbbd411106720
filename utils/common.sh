#!/usr/bin/env bash
# Helpers every recipe and step sources: log() with file and line, and .done markers.

log() {
  # log "message": prints time, the caller's file:line and function, then the message.
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

is_done() {
  # is_done MARKER KEY: true when MARKER exists and was written with the same KEY
  # (the arguments the work depended on). A different KEY means: redo the work.
  local marker=$1 key=$2
  [ -f "$marker" ] || return 1
  if [ "$(cat "$marker")" != "$key" ]; then
    log "$marker was made with other arguments; redoing it"
    return 1
  fi
  return 0
}

mark_done() {
  # mark_done MARKER KEY
  mkdir -p "$(dirname "$1")"
  printf '%s' "$2" > "$1"
}
