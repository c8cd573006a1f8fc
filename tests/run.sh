#!/usr/bin/env bash
# cim test runner.
#   BIN=build/asan bash tests/run.sh all|unit|core|e2e
#     unit  every $BIN/tests/test_* binary
#     e2e   every $BIN/tests/e2e_* binary against a private stack (MariaDB, Redis, 2 msg_logic,
#           2 msg_gate) started on free ports in a temp dir under /tmp, stopped at the end
#     core  unit + the core end-to-end tests (names listed in tests/lib/core.list if present,
#           else all e2e_*)
#     all   unit + e2e + hook scripts (tests/fuzz/run.sh, tests/chaos/run.sh, tests/web/run.sh,
#           when present; they run against the same stack with the same environment)
# Every test binary prints "N passed, N failed" last; this prints the totals as its last line
# and exits non-zero if anything failed or nothing ran.
#
# Environment: BIN (default build), VALGRIND=1 (servers and test binaries under valgrind),
#   ONLY=glob (run only matching binaries, e.g. ONLY='e2e_login*'), KEEP=1 (keep the temp dir),
#   E2E_TIMEOUT / UNIT_TIMEOUT (s per binary: 600, 1800 under valgrind), TEST_TIMEOUT (s per
#   case, exported; 300 under valgrind), E2E_LOGIC_EXTRA / E2E_GATE_EXTRA (extra config lines),
#   TEST_KEEP_CIM_ENV=1 (keep the caller's CIM_* variables; by default they are cleared).
# Failed runs copy their outputs and server logs to tests/out/RUN_ID/.
#
# The e2e binaries get: CIM_GATE1, CIM_GATE2 (host:port, TCP), CIM_GATE1_WS, CIM_GATE2_WS,
#   CIM_GATE1_METRICS, CIM_GATE2_METRICS, CIM_API, CIM_API2 (host:port of logic1/2 HTTP),
#   CIM_API_KEY, CIM_MYSQL_SOCK, CIM_MYSQL_PORT, CIM_REDIS_PORT, CIM_BIN, CIM_TEST_DIR (stack
#   dir: NAME.pid, NAME.conf, log/NAME.log, and ctl.sh: `$CIM_TEST_DIR/ctl.sh start|stop|kill|
#   status NAME`, NAME = mysql, redis, logic1, logic2, gate1, gate2).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/lib/common.sh
source "$REPO/tests/lib/common.sh"

MODE=${1:-all}
case $MODE in
    all | unit | core | e2e) ;;
    *)
        sed -n '2,12s/^# \{0,1\}//p' "$0" >&2
        exit 2
        ;;
esac

BIN=${BIN:-build}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
export BIN
VALGRIND=${VALGRIND:-0}
ONLY=${ONLY:-*}
if [[ $VALGRIND == 1 ]]; then
    export TEST_TIMEOUT=${TEST_TIMEOUT:-300}
    DEFAULT_TIMEOUT=1800
else
    DEFAULT_TIMEOUT=600
fi
E2E_TIMEOUT=${E2E_TIMEOUT:-$DEFAULT_TIMEOUT}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-$DEFAULT_TIMEOUT}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# a clean environment: the caller's CIM_* / STACK_* settings must not change the test stack
if [[ ${TEST_KEEP_CIM_ENV:-0} != 1 ]]; then
    for v in $(compgen -e | grep '^CIM_'); do unset "$v"; done
fi
for v in $(compgen -e | grep '^STACK_'); do
    [[ $v == STACK_WAIT || $v == STACK_STOP_WAIT ]] || unset "$v"
done
unset PREFIX

VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --track-fds=no)

RUN_ID=$(date +%Y%m%d-%H%M%S)-$$
WORK=$(mktemp -d /tmp/cim-test.XXXXXX) || exit 1
mkdir -p "$WORK/out" "$WORK/vg"
STACK=$WORK/stack
STACK_UP=0
PASSED=0
FAILED=0
RAN=0
FAILED_ITEMS=()
CHILD=""
FINISHED=0

say() { printf '%s\n' "$*"; }

# run CMD with all output in LOG, shown indented as it comes; interruptible
run_logged() { # LOG CMD...
    local log=$1 rc tailpid
    shift
    : >"$log"
    # in a subshell that reports a crash into the log and passes SIGTERM on to the command
    # (timeout then signals the test's whole process group)
    (
        "$@" &
        c=$!
        trap 'kill -TERM $c 2>/dev/null' TERM
        wait $c
        rc=$?
        while kill -0 $c 2>/dev/null; do
            wait $c
            rc=$?
        done
        exit $rc
    ) </dev/null >"$log" 2>&1 &
    CHILD=$!
    tail -s 0.2 -n +1 -f --pid="$CHILD" "$log" 2>/dev/null | sed -u 's/^/    /' &
    tailpid=$!
    wait "$CHILD"
    rc=$?
    wait "$tailpid" 2>/dev/null
    CHILD=""
    return $rc
}

# account for one test program: KIND NAME LOG RC [VG-LOG-GLOB-PREFIX]
account() {
    local name=$1 log=$2 rc=$3 vgpfx=${4:-} s p=0 f=0 note="" bad b
    s=$(summary_of "$log")
    if [[ -n $s ]]; then
        p=${s% *}
        f=${s#* }
    else
        f=1
        note="no summary line"
    fi
    case $rc in
        0) ;;
        124 | 137) note="timed out${note:+, $note}" ;;
        *) note="${note:+$note, }exit status $rc" ;;
    esac
    ((rc != 0 && f == 0)) && f=1
    if [[ -n $vgpfx ]]; then
        bad=$(vg_bad_logs "$vgpfx".*.log)
        if [[ -n $bad ]]; then
            for b in $bad; do
                say "    valgrind: $b"
                sed 's/^/    | /' "$b"
            done
            ((f == 0)) && f=1
            note+="${note:+, }valgrind errors"
        fi
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    RAN=$((RAN + 1))
    ((f > 0)) && FAILED_ITEMS+=("$name")
    say "--- $name: $p passed, $f failed${note:+ ($note)}"
}

run_prog() { # TIMEOUT PATH: a test binary (under valgrind when VALGRIND=1)
    local t=$1 path=$2 name log vgpfx="" cmd rc
    name=$(basename "$path")
    log=$WORK/out/$name.out
    cmd=(timeout -k 10 "$t")
    if [[ $VALGRIND == 1 ]]; then
        vgpfx=$WORK/vg/$name
        cmd+=("${VG[@]}" "--log-file=$vgpfx.%p.log")
    fi
    say "=== $name"
    run_logged "$log" "${cmd[@]}" "$path"
    rc=$?
    account "$name" "$log" "$rc" "$vgpfx"
}

list_bins() { # PATTERN: executables in $BIN/tests matching PATTERN and $ONLY
    local f
    for f in "$BIN"/tests/$1; do
        [[ -f $f && -x $f ]] || continue
        # shellcheck disable=SC2053 # ONLY is a glob
        [[ $(basename "$f") == $ONLY ]] || continue
        echo "$f"
    done
}

run_unit() {
    local bins b
    bins=$(list_bins 'test_*')
    if [[ -z $bins ]]; then
        say "unit: no test binaries in $BIN/tests"
        return
    fi
    for b in $bins; do run_prog "$UNIT_TIMEOUT" "$b"; done
}

# --- the e2e stack ---------------------------------------------------------------------------

STACK_VARS=(STACK_DIR STACK_MYSQL_PORT STACK_REDIS_PORT STACK_LOGICS STACK_GATES
    STACK_LOGIC1_NN STACK_LOGIC1_HTTP STACK_LOGIC2_NN STACK_LOGIC2_HTTP
    STACK_GATE1_PORT STACK_GATE1_WS STACK_GATE1_NN STACK_GATE1_METRICS
    STACK_GATE2_PORT STACK_GATE2_WS STACK_GATE2_NN STACK_GATE2_METRICS
    STACK_LOG_LEVEL STACK_LOGIC_EXTRA STACK_GATE_EXTRA STACK_PREFIX STACK_WAIT STACK_STOP_WAIT
    STACK_MYSQL_POOL STACK_MYSQL_REDO STACK_MYSQL_CONNS STACK_QUIET STACK_HOWTO BIN)

stack() { bash "$REPO/deploy/stack.sh" "$@"; }

e2e_start() {
    local ports v
    ports=$(free_ports 14) || return 1
    # shellcheck disable=SC2206
    local P=($ports)
    export STACK_DIR=$STACK STACK_MYSQL_PORT=${P[0]} STACK_REDIS_PORT=${P[1]}
    export STACK_LOGICS=2 STACK_GATES=2
    export STACK_MYSQL_POOL=256M STACK_MYSQL_REDO=96M # small test data; keeps each test stack's disk small
    export STACK_MYSQL_CONNS=2 # the logic's default: two workers per shard, as in production
    export STACK_LOGIC1_NN=${P[2]} STACK_LOGIC1_HTTP=${P[3]} STACK_LOGIC2_NN=${P[4]} STACK_LOGIC2_HTTP=${P[5]}
    export STACK_GATE1_PORT=${P[6]} STACK_GATE1_WS=${P[7]} STACK_GATE1_NN=${P[8]} STACK_GATE1_METRICS=${P[9]}
    export STACK_GATE2_PORT=${P[10]} STACK_GATE2_WS=${P[11]} STACK_GATE2_NN=${P[12]} STACK_GATE2_METRICS=${P[13]}
    export STACK_LOG_LEVEL=debug
    STACK_LOGIC_EXTRA=$'pwhash_level = 0\nlogin_fail_max_ip = 1000'
    # request limits raised for bursts and load tests; tests of the limits start their own gate
    # login deadline and idle timeout: 2 and 3 s; 8 and 10 s under valgrind, where a logic just
    # restarted can take seconds over its first logins. The tests read both from the environment
    export CIM_TEST_AUTH_TIMEOUT=2 CIM_TEST_IDLE_TIMEOUT=3
    [[ $VALGRIND == 1 ]] && CIM_TEST_AUTH_TIMEOUT=8 CIM_TEST_IDLE_TIMEOUT=10
    STACK_GATE_EXTRA="gate_auth_timeout = $CIM_TEST_AUTH_TIMEOUT"$'\n'"gate_idle_timeout = $CIM_TEST_IDLE_TIMEOUT"$'\ngate_rate = 100000\ngate_burst = 100000'
    [[ -n ${E2E_LOGIC_EXTRA:-} ]] && STACK_LOGIC_EXTRA+=$'\n'"$E2E_LOGIC_EXTRA"
    [[ -n ${E2E_GATE_EXTRA:-} ]] && STACK_GATE_EXTRA+=$'\n'"$E2E_GATE_EXTRA"
    export STACK_LOGIC_EXTRA STACK_GATE_EXTRA
    if [[ $VALGRIND == 1 ]]; then
        export STACK_PREFIX="${VG[*]} --log-file=$STACK/log/vg-{name}.%p.log"
        export STACK_WAIT=${STACK_WAIT:-180} STACK_STOP_WAIT=${STACK_STOP_WAIT:-60}
    else
        export STACK_PREFIX=""
        export STACK_WAIT=${STACK_WAIT:-60} STACK_STOP_WAIT=${STACK_STOP_WAIT:-20}
    fi
    export STACK_QUIET=0 STACK_HOWTO=0
    mkdir -p "$STACK"
    {
        echo '#!/usr/bin/env bash'
        echo "# this test stack's processes: ctl.sh start|stop|kill|restart|status [NAME...]"
        echo '# NAME: mysql redis logic1 logic2 gate1 gate2 (start waits until it answers)'
        for v in "${STACK_VARS[@]}"; do printf 'export %s=%q\n' "$v" "${!v}"; done
        printf 'exec bash %q "$@"\n' "$REPO/deploy/stack.sh"
    } >"$STACK/ctl.sh"
    chmod +x "$STACK/ctl.sh"

    say "=== e2e stack in $STACK (mysql ${P[0]}, redis ${P[1]}, logic http ${P[3]} ${P[5]}, gates ${P[6]} ${P[10]})"
    STACK_UP=1
    if ! run_logged "$WORK/out/stack-start.out" stack start; then
        say "--- e2e stack: failed to start"
        FAILED=$((FAILED + 1))
        FAILED_ITEMS+=("e2e-stack-start")
        return 1
    fi
    export CIM_GATE1=127.0.0.1:${P[6]} CIM_GATE2=127.0.0.1:${P[10]}
    export CIM_GATE1_WS=127.0.0.1:${P[7]} CIM_GATE2_WS=127.0.0.1:${P[11]}
    export CIM_GATE1_METRICS=127.0.0.1:${P[9]} CIM_GATE2_METRICS=127.0.0.1:${P[13]}
    export CIM_API=127.0.0.1:${P[3]} CIM_API2=127.0.0.1:${P[5]}
    CIM_API_KEY=$(tr -d ' \n' <"$STACK/api_key")
    export CIM_API_KEY
    export CIM_MYSQL_SOCK=$STACK/mysql/mysqld.sock CIM_MYSQL_PORT=${P[0]} CIM_REDIS_PORT=${P[1]}
    export CIM_TEST_DIR=$STACK CIM_BIN=$BIN
}

e2e_stop() { # stop the stack, then look for valgrind / sanitizer reports in the server logs
    local f
    ((STACK_UP)) || return 0
    STACK_UP=0
    say "=== e2e stack: stopping"
    STACK_QUIET=1 stack stop 2>&1 | sed 's/^/    /'
    for f in $(vg_bad_logs "$STACK"/log/vg-*.log); do
        say "--- valgrind report in $(basename "$f"):"
        sed 's/^/    | /' "$f"
        FAILED=$((FAILED + 1))
        FAILED_ITEMS+=("$(basename "$f")")
    done
    for f in $(san_bad_logs "$STACK"/log/logic*.log "$STACK"/log/gate*.log); do
        say "--- sanitizer report in $(basename "$f"):"
        san_excerpt "$f" | sed 's/^/    | /'
        FAILED=$((FAILED + 1))
        FAILED_ITEMS+=("sanitizer:$(basename "$f")")
    done
}

# restore processes a test stopped (ctl.sh stop NAME) before the next test
e2e_restore() {
    local out=$WORK/out/stack-restore.out
    if ! STACK_QUIET=1 stack start >"$out" 2>&1; then
        sed 's/^/    /' "$out"
        return 1
    fi
}

run_e2e() { # MODE
    local bins="" hooks=() h name list=$REPO/tests/lib/core.list first=1 b
    bins=$(list_bins 'e2e_*')
    if [[ $1 == core && -f $list && -n $bins ]]; then
        local keep=""
        for b in $bins; do
            name=$(basename "$b")
            grep -v '^[[:space:]]*#' "$list" | grep -qxF "$name" && keep+="$b "
        done
        bins=$keep
    fi
    if [[ $1 == all ]]; then
        for h in tests/fuzz/run.sh tests/chaos/run.sh tests/web/run.sh; do
            [[ -f $REPO/$h ]] && hooks+=("$REPO/$h")
        done
    elif [[ $1 == core && -f $REPO/tests/web/run.sh ]]; then
        export WEB_ONLY=ws # the gate's WebSocket side, without a browser
        hooks+=("$REPO/tests/web/run.sh")
    fi
    if [[ -z $bins && ${#hooks[@]} == 0 ]]; then
        say "e2e: no e2e_* binaries in $BIN/tests"
        return
    fi
    e2e_start || return
    for b in $bins; do
        if ((!first)) && ! e2e_restore; then
            say "--- e2e stack: could not restore processes before $(basename "$b")"
            FAILED=$((FAILED + 1))
            FAILED_ITEMS+=("e2e-stack-restore")
            break
        fi
        first=0
        run_prog "$E2E_TIMEOUT" "$b"
    done
    for h in "${hooks[@]}"; do
        e2e_restore || true
        name=${h#"$REPO"/}
        name=${name%/run.sh}
        say "=== $name"
        run_logged "$WORK/out/${name//\//_}.out" timeout -k 10 "$E2E_TIMEOUT" bash "$h"
        account "$name" "$WORK/out/${name//\//_}.out" $?
    done
}

# --- finish ----------------------------------------------------------------------------------

# the server log lines most likely to explain a failure, printed (CI keeps only the output)
log_digest() {
    local f
    [[ -d ${STACK:-}/log ]] || return 0
    for f in "$STACK"/log/gate*.log "$STACK"/log/logic*.log; do
        [[ -f $f ]] || continue
        say "--- last warnings and closes in $(basename "$f"):"
        grep -E ' (WARN|ERROR) |: closed|no login|kicked|left|joined' "$f" | tail -n 15 | cut -c1-220 |
            sed 's/^/    | /'
    done
}

# the server log lines written while a failed case ran: test.h prints "FAIL name (T0 .. T1)"
# with the times spelled as the log lines begin, so the window is a string comparison
log_windows() {
    local line name t0 t1 f sel n
    [[ -d ${STACK:-}/log ]] || return 0
    sel=$WORK/window.txt
    grep -ho 'FAIL [^ ]* ([0-9T:.Z-]* \.\. [0-9T:.Z-]*)' "$WORK"/out/*.out 2>/dev/null | head -n 5 |
        while read -r line; do
            read -r _ name t0 _ t1 <<<"${line//[()]/}"
            for f in "$STACK"/log/gate*.log "$STACK"/log/logic*.log; do
                [[ -f $f ]] || continue
                awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b' "$f" | cut -c1-220 >"$sel"
                n=$(wc -l <"$sel")
                ((n > 0)) || continue
                say "--- $(basename "$f") while $name ran ($t0 .. $t1), $n lines:"
                if ((n > 60)); then
                    head -n 30 "$sel" | sed 's/^/    | /'
                    say "    | ... $((n - 60)) more ..."
                    tail -n 30 "$sel" | sed 's/^/    | /'
                else
                    sed 's/^/    | /' "$sel"
                fi
            done
        done
}

save_artifacts() {
    local dest=$REPO/tests/out/$RUN_ID
    mkdir -p "$dest" || return
    cp -r "$WORK/out" "$dest/" 2>/dev/null
    if compgen -G "$WORK/vg/*.log" >/dev/null; then cp -r "$WORK/vg" "$dest/"; fi
    if [[ -d $STACK ]]; then
        cp -r "$STACK/log" "$dest/stack-log" 2>/dev/null
        cp "$STACK"/*.conf "$dest/" 2>/dev/null
        cp "$STACK/mysql/err.log" "$dest/stack-log/mysql-err.log" 2>/dev/null
        cp "$STACK/redis/redis.log" "$dest/stack-log/redis.log" 2>/dev/null
    fi
    say "outputs and logs: $dest"
}

finish() {
    ((FINISHED)) && return
    FINISHED=1
    e2e_stop
    if ((FAILED > 0)); then
        say "failed: ${FAILED_ITEMS[*]}"
        log_digest
        log_windows
        save_artifacts
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    if ((RAN == 0 || PASSED + FAILED == 0)); then
        say "no test ran (BIN=$BIN)"
        ((FAILED == 0)) && FAILED=1
    fi
    say "$PASSED passed, $FAILED failed"
}

on_signal() {
    trap - INT TERM
    say "interrupted"
    [[ -n $CHILD ]] && kill -TERM "$CHILD" 2>/dev/null
    FAILED=$((FAILED + 1))
    FAILED_ITEMS+=("interrupted")
    finish
    exit 130
}
trap on_signal INT TERM
trap finish EXIT

case $MODE in
    unit) run_unit ;;
    e2e) run_e2e e2e ;;
    core)
        run_unit
        run_e2e core
        ;;
    all)
        run_unit
        run_e2e all
        ;;
esac
finish
((FAILED == 0))
