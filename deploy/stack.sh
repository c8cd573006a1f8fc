#!/usr/bin/env bash
# cim local stack (make run / make stop; the test runner uses the same functions).
#   bash deploy/stack.sh start [NAME...]   start what is not running (all, or the named ones)
#   bash deploy/stack.sh stop [NAME...]    SIGTERM, wait (SIGKILL after STACK_STOP_WAIT s)
#   bash deploy/stack.sh kill NAME...      SIGKILL (crash tests)
#   bash deploy/stack.sh restart [NAME...]
#   bash deploy/stack.sh status
# NAME: mysql, redis, logic1.., gate1..  Settings: see deploy/stack-lib.sh (STACK_DIR, BIN,
# STACK_*_PORT, PREFIX ...). Data, logs, pids and keys live in run/ (STACK_DIR).
set -uo pipefail
# shellcheck source=deploy/stack-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack-lib.sh"

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
    start)
        stack_init || exit 1
        if ! stack_start "$@"; then
            stack__err "start failed (logs: $STACK_DIR/log/, $STACK_DIR/mysql/err.log); 'bash deploy/stack.sh stop' stops what did start"
            exit 1
        fi
        if (($# == 0)) && [[ ${STACK_QUIET:-0} != 1 && ${STACK_HOWTO:-1} != 0 ]]; then
            stack_howto
        fi
        exit 0
        ;;
    stop)
        stack_init || exit 1
        stack_stop "$@"
        ;;
    kill)
        stack_init || exit 1
        stack_kill "$@"
        ;;
    restart)
        stack_init || exit 1
        stack_stop "$@" && stack_start "$@"
        ;;
    status)
        stack_init || exit 1
        stack_status
        ;;
    *)
        sed -n '2,9s/^# \{0,1\}//p' "$0" >&2
        exit 2
        ;;
esac
