# shellcheck shell=bash
# scripts/lib/proc.sh: starting, waiting for and stopping processes, for the scripts beside it.
# Source it (`. "$(dirname "$0")/lib/proc.sh"`); it defines functions only and sets no shell options.
#
# Every wait is bounded by a number of seconds and also ends early when the process it waits for has
# exited, so a component that dies at start-up is reported at once rather than after the timeout.
# Messages go to stderr prefixed with $proc_label (default: the calling script's name).

proc_label=${proc_label:-${0##*/}}

# proc_alive PID: whether PID runs. A zombie (exited, not yet reaped by its parent) counts as gone:
# kill -0 alone would report it alive until the parent calls wait.
proc_alive() {
    [[ -n $1 ]] && kill -0 "$1" 2> /dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"
}

# proc_wait_until SECONDS PID COMMAND...: runs COMMAND every 0.05 s until it succeeds.
# Returns 0 once it succeeds, 1 if PID (when not empty) exited first, 2 when SECONDS passed.
proc_wait_until() {
    local seconds=$1 pid=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if [[ -n $pid ]] && ! proc_alive "$pid"; then
            "$@" && return 0   # it may have finished its work and exited in between
            return 1
        fi
        ((SECONDS >= deadline)) && return 2
        sleep 0.05
    done
}

# proc_http_ok URL: the URL answers 2xx within 2 s.
proc_http_ok() { curl -fsS --max-time 2 -o /dev/null "$1" 2> /dev/null; }

# proc_log_has FILE ERE [COUNT]: FILE has at least COUNT (default 1) lines matching the extended regex.
proc_log_has() {
    local count
    count=$(grep -Ecs -- "$2" "$1") || true
    ((${count:-0} >= ${3:-1}))
}

# proc_wait_exit PID SECONDS: waits until PID is gone. Returns 0 when it is, 1 at the deadline.
proc_wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while proc_alive "$pid"; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.05
    done
}

# proc_reap PID SECONDS [NAME]: waits (bounded) for PID to exit, SIGKILLs it after SECONDS (saying
# so, with NAME), and reaps it when it is a child of this shell. Returns its exit status (128+N
# when killed by signal N; 0 for a process that is not this shell's child).
proc_reap() {
    local pid=$1 seconds=$2 name=${3:-pid $1}
    if ! proc_wait_exit "$pid" "$seconds"; then
        printf '%s: %s did not stop within %ss; killing it\n' "$proc_label" "$name" "$seconds" >&2 2> /dev/null
        kill -KILL "$pid" 2> /dev/null || true
    fi
    local rc=0
    wait "$pid" 2> /dev/null || rc=$?
    ((rc == 127)) && rc=0   # not our child: someone else reaps it
    return "$rc"
}

# proc_stop PID [SECONDS [SIGNAL]]: sends SIGNAL (default TERM) and reaps as proc_reap does
# (default 10 s). Does nothing for an empty PID. Returns the exit status.
proc_stop() {
    local pid=$1 seconds=${2:-10} signal=${3:-TERM}
    [[ -n $pid ]] || return 0
    kill -"$signal" "$pid" 2> /dev/null || true
    proc_reap "$pid" "$seconds"
}

# proc_nats_url DIR PID SECONDS: the client URL of a nats-server started with `-p -1
# --ports_file_dir DIR` as PID, printed once its ports file appears. Returns non-zero if PID exits
# or SECONDS pass first.
proc_nats_url() {
    local file="$1/nats-server_$2.ports"
    proc_wait_until "$3" "$2" test -s "$file" || return 1
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["nats"][0])' "$file"
}
