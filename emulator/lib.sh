# Shared by start.sh and stop.sh (sourced, not run): process checks on a recorded pid.
# shellcheck shell=bash

# The emulator's JVM entry point (the Debian wrapper script runs the same class).
# shellcheck disable=SC2034  # used by the scripts that source this file
readonly MAIN_CLASS=com.google.cloud.datastore.emulator.firestore.CloudFirestore

# True if $1 is a live (not zombie) process. The parent of a detached emulator may not reap it promptly.
alive() {
  local pid=$1 stat
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/stat ]]; then
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
  fi
}

# True if $1 is a Firestore emulator JVM (guards against a recycled pid).
is_emulator() {
  local cmd
  if [[ -r /proc/$1/cmdline ]]; then
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  else
    cmd=$(ps -o command= -p "$1" 2>/dev/null) || return 1
  fi
  [[ $cmd == *"$MAIN_CLASS"* ]]
}
