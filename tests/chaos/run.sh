#!/usr/bin/env bash
# Chaos suite (issue 8): many clients send 1:1 and group messages while one fault at a time
# hits the stack; after each fault every acked message must be in every recipient's inbox
# exactly once, every inbox seq stream gap-free, and the system must serve again by itself.
# The driver is tests/chaos/chaos.c (built here against $BIN/libcim.a).
#
#   BIN=build/asan bash tests/chaos/run.sh        standalone: starts its own stack
#   (tests/run.sh all runs it as a hook against the e2e stack, with the CIM_* environment)
#
# Faults on the shared stack: kill -9 a msg_logic and restart it, kill -9 a msg_gate and
# restart it, restart Redis with its data gone, stop MariaDB (all 4 shards) for a while,
# SIGSTOP a msg_logic for a while. Then a second, private stack with one MariaDB per shard
# (4 servers) for the "one shard down" fault.
# Environment: CHAOS_LONG=1 (more clients, longer traffic and outages), VALGRIND=1 or
# CIM_TEST_LIGHT (a much smaller run), CHAOS_USERS / CHAOS_SECS / CHAOS_RATE (override),
# CHAOS_ONLY=shared|shards (one part only), CHAOS_FAULTS="NAME ..." (only these faults),
# KEEP=1 (keep the temp dir).
# Prints the driver's "fault=NAME acked=N received=N lost=N dup=N ..." lines and ends with
# "N passed, N failed".
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/lib/common.sh
source "$REPO/tests/lib/common.sh"

BIN=${BIN:-${CIM_BIN:-build}}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
export BIN

LIGHT=0
[[ ${VALGRIND:-0} == 1 || (-n ${CIM_TEST_LIGHT:-} && ${CIM_TEST_LIGHT:-} != 0) ]] && LIGHT=1
if [[ ${CHAOS_LONG:-0} == 1 ]]; then
    USERS=100 SECS=15 RATE=8 DB_OUT=30 STOP_S=10 DRAIN=240
elif ((LIGHT)); then
    USERS=6 SECS=2 RATE=2 DB_OUT=3 STOP_S=3 DRAIN=240
else
    USERS=40 SECS=3 RATE=4 DB_OUT=5 STOP_S=5 DRAIN=120
fi
USERS=${CHAOS_USERS:-$USERS}
SECS=${CHAOS_SECS:-$SECS}
RATE=${CHAOS_RATE:-$RATE}

WORK=$(mktemp -d /tmp/cim-chaos.XXXXXX) || exit 1
PASSED=0
FAILED=0
STACKS=()
EXTRA_MYSQL_PIDS=()

say() { printf '%s\n' "$*"; }

cleanup() {
    local s p
    for s in "${STACKS[@]}"; do
        STACK_QUIET=1 bash "$s/ctl.sh" stop >/dev/null 2>&1
    done
    for p in "${EXTRA_MYSQL_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for f in "$WORK"/shards/m*/mysqld.pid; do
        [[ -s $f ]] && kill -TERM "$(<"$f")" 2>/dev/null
    done
    sleep 0.5
    if [[ ${KEEP:-0} == 1 ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}

finish() {
    trap - EXIT INT TERM
    cleanup
    say "$PASSED passed, $FAILED failed"
    ((FAILED == 0 && PASSED > 0))
    exit $?
}
trap finish EXIT
trap 'say "interrupted"; FAILED=$((FAILED + 1)); finish' INT TERM

# --- the driver ------------------------------------------------------------------------------

build_driver() {
    local san=() pkgs="libuv libprotobuf-c hiredis libmariadb libsodium libmicrohttpd jansson libcurl libssl libcrypto"
    if [[ ! -f $BIN/libcim.a || ! -d $BIN/gen ]]; then
        say "chaos: $BIN/libcim.a not found (build first: make BUILD=$BIN all)"
        return 1
    fi
    if nm "$BIN/libcim.a" 2>/dev/null | grep __asan_ >/dev/null; then # not -q: pipefail + SIGPIPE
        # shellcheck disable=SC2054 # one flag with a comma
        san=(-fsanitize=address,undefined -fno-omit-frame-pointer)
    fi
    # shellcheck disable=SC2046,SC2086
    ${CC:-cc} -std=gnu11 -g -O1 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wformat=2 -Wwrite-strings -Wpointer-arith -Wvla -Wno-missing-field-initializers -Werror \
        "${san[@]}" -I "$REPO/common" -I "$BIN/gen" -I "$REPO/client" $(pkg-config --cflags $pkgs) \
        "$REPO/tests/chaos/chaos.c" "$BIN/libcim.a" $(pkg-config --libs $pkgs) \
        -lnanomsg -lwslay -lpthread -lm -o "$WORK/chaos"
}

run_driver() { # LABEL ARGS...: runs the driver, counts its summary
    local label=$1 log=$WORK/$1.out rc s a keep=()
    shift
    for a in "$@"; do # CHAOS_FAULTS="logic_kill shard_stop": only those faults
        [[ -z ${CHAOS_FAULTS:-} || " $CHAOS_FAULTS " == *" ${a%%=*} "* ]] && keep+=("$a")
    done
    ((${#keep[@]})) || return 0
    set -- "${keep[@]}"
    say "=== chaos: $label"
    "$WORK/chaos" -u "$USERS" -t "$SECS" -r "$RATE" -d "$DRAIN" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    s=$(summary_of "$log")
    if [[ -z $s ]]; then
        say "chaos: $label: no summary (exit status $rc)"
        FAILED=$((FAILED + 1))
        return
    fi
    PASSED=$((PASSED + ${s% *}))
    FAILED=$((FAILED + ${s#* }))
    ((rc != 0 && ${s#* } == 0)) && FAILED=$((FAILED + 1))
}

# --- stacks ----------------------------------------------------------------------------------

# start a stack in DIR like tests/run.sh does (2 logics, 2 gates, free ports); writes DIR/ctl.sh
# and DIR/env (the CIM_* variables). Extra logic config lines in LOGIC_EXTRA.
start_stack() { # DIR
    local dir=$1 ports v P
    ports=$(free_ports 14) || return 1
    # shellcheck disable=SC2206
    P=($ports)
    mkdir -p "$dir"
    (
        export STACK_DIR=$dir STACK_MYSQL_PORT=${P[0]} STACK_REDIS_PORT=${P[1]}
        export STACK_LOGICS=2 STACK_GATES=2
        export STACK_LOGIC1_NN=${P[2]} STACK_LOGIC1_HTTP=${P[3]} STACK_LOGIC2_NN=${P[4]} STACK_LOGIC2_HTTP=${P[5]}
        export STACK_GATE1_PORT=${P[6]} STACK_GATE1_WS=${P[7]} STACK_GATE1_NN=${P[8]} STACK_GATE1_METRICS=${P[9]}
        export STACK_GATE2_PORT=${P[10]} STACK_GATE2_WS=${P[11]} STACK_GATE2_NN=${P[12]} STACK_GATE2_METRICS=${P[13]}
        export STACK_LOG_LEVEL=info STACK_PREFIX="" STACK_QUIET=1 STACK_HOWTO=0
        export STACK_WAIT=${STACK_WAIT:-90} STACK_STOP_WAIT=${STACK_STOP_WAIT:-20}
        STACK_LOGIC_EXTRA=$'pwhash_level = 0\nlogin_fail_max_ip = 1000000'
        [[ -n ${LOGIC_EXTRA:-} ]] && STACK_LOGIC_EXTRA+=$'\n'"${LOGIC_EXTRA//@MYSQL_PORT@/${P[0]}}"
        export STACK_LOGIC_EXTRA
        export STACK_GATE_EXTRA=$'gate_auth_timeout = 2\ngate_idle_timeout = 3\ngate_rate = 100000\ngate_burst = 100000\ngate_ip_conn_rate = 100000\ngate_ip_conn_burst = 100000'
        {
            echo '#!/usr/bin/env bash'
            for v in STACK_DIR STACK_MYSQL_PORT STACK_REDIS_PORT STACK_LOGICS STACK_GATES \
                STACK_LOGIC1_NN STACK_LOGIC1_HTTP STACK_LOGIC2_NN STACK_LOGIC2_HTTP \
                STACK_GATE1_PORT STACK_GATE1_WS STACK_GATE1_NN STACK_GATE1_METRICS \
                STACK_GATE2_PORT STACK_GATE2_WS STACK_GATE2_NN STACK_GATE2_METRICS \
                STACK_LOG_LEVEL STACK_LOGIC_EXTRA STACK_GATE_EXTRA STACK_PREFIX STACK_WAIT \
                STACK_STOP_WAIT STACK_QUIET STACK_HOWTO BIN; do
                printf 'export %s=%q\n' "$v" "${!v}"
            done
            printf 'exec bash %q "$@"\n' "$REPO/deploy/stack.sh"
        } >"$dir/ctl.sh"
        chmod +x "$dir/ctl.sh"
        {
            echo "export CIM_GATE1=127.0.0.1:${P[6]} CIM_GATE2=127.0.0.1:${P[10]}"
            echo "export CIM_TEST_DIR=$dir CIM_MYSQL_PORT=${P[0]} CIM_REDIS_PORT=${P[1]}"
        } >"$dir/env"
    ) || return 1
    STACKS+=("$dir")
    if ! bash "$dir/ctl.sh" start >"$dir/start.out" 2>&1; then
        say "chaos: stack in $dir did not start:"
        sed 's/^/    /' "$dir/start.out"
        return 1
    fi
}

# --- MariaDB servers of the sharded stack (one per shard; shard 0 is the stack's own) --------

# writes $WORK/shards/ctl.sh: start|stop N (N = 1..3), and initialises the data dirs
shards_prepare() { # PORT1 PORT2 PORT3
    local d=$WORK/shards i userarg=""
    mkdir -p "$d"
    [[ $(id -u) == 0 ]] && userarg=--user=root
    if ! mariadb-install-db --no-defaults $userarg --datadir="$d/template" \
        --auth-root-authentication-method=normal --skip-test-db >"$d/init.log" 2>&1; then
        say "chaos: mariadb-install-db failed:"
        tail -n 20 "$d/init.log"
        return 1
    fi
    for i in 1 2 3; do
        mkdir -p "$d/m$i"
        cp -a "$d/template" "$d/m$i/data"
    done
    cat >"$d/ctl.sh" <<EOF
#!/usr/bin/env bash
# start|stop N: the MariaDB of shard N (1..3) of the chaos shard stack
d=$d
ports=(0 $1 $2 $3)
n=\$2
m=\$d/m\$n
case \$1 in
start)
    setsid mariadbd --no-defaults $userarg --datadir="\$m/data" --socket="\$m/mysqld.sock" \\
        --pid-file="\$m/mysqld.pid" --port="\${ports[\$n]}" --bind-address=127.0.0.1 \\
        --skip-name-resolve --log-error="\$m/err.log" --max-connections=1000 \\
        --innodb-buffer-pool-size=64M --character-set-server=utf8mb4 \\
        --collation-server=utf8mb4_general_ci </dev/null >>"\$m/stdout.log" 2>&1 &
    for _ in \$(seq 600); do
        mariadb-admin --no-defaults -S "\$m/mysqld.sock" -uroot ping >/dev/null 2>&1 && exit 0
        sleep 0.1
    done
    echo "shard \$n mariadb did not start" >&2
    exit 1
    ;;
stop)
    pid=\$(cat "\$m/mysqld.pid" 2>/dev/null) || exit 0
    kill -TERM "\$pid" 2>/dev/null
    for _ in \$(seq 600); do
        kill -0 "\$pid" 2>/dev/null || exit 0
        sleep 0.1
    done
    kill -KILL "\$pid" 2>/dev/null
    ;;
esac
EOF
}

shards_schema() { # N: create im_N on shard N's server and apply sql/
    local m=$WORK/shards/m$1 f
    mariadb --no-defaults -S "$m/mysqld.sock" -uroot \
        -e "CREATE DATABASE IF NOT EXISTS im_$1 CHARACTER SET utf8mb4" || return 1
    for f in "$REPO"/sql/[0-9][0-9][0-9]_*.sql; do
        [[ -e $f ]] || continue
        mariadb --no-defaults -S "$m/mysqld.sock" -uroot "im_$1" <"$f" || return 1
    done
}

# --- main ------------------------------------------------------------------------------------

if ! build_driver; then
    say "chaos: could not build the driver"
    FAILED=$((FAILED + 1))
    exit 1
fi

if [[ -z ${CIM_GATE1:-} || -z ${CIM_TEST_DIR:-} ]]; then
    say "=== chaos: starting a private stack in $WORK/main"
    if ! start_stack "$WORK/main"; then
        FAILED=$((FAILED + 1))
        exit 1
    fi
    # shellcheck disable=SC1091
    source "$WORK/main/env"
fi
CTL="bash $CIM_TEST_DIR/ctl.sh"
PIDF=$CIM_TEST_DIR/logic1.pid
export STACK_QUIET=1

[[ ${CHAOS_ONLY:-all} != shards ]] && run_driver shared \
    "logic_kill=$CTL kill logic1 && sleep 1 && $CTL start logic1" \
    "gate_kill=$CTL kill gate1 && sleep 1 && $CTL start gate1" \
    "redis_wipe=$CTL stop redis && $CTL start redis" \
    "mysql_stop=$CTL stop mysql && sleep $DB_OUT && $CTL start mysql" \
    "logic_sigstop=kill -STOP \$(cat $PIDF) && sleep $STOP_S && kill -CONT \$(cat $PIDF)"

# make sure the shared stack is whole again for whatever runs next
bash "$CIM_TEST_DIR/ctl.sh" start >/dev/null 2>&1 || true

if [[ ${CHAOS_SKIP_SHARDS:-0} != 1 && ${CHAOS_ONLY:-all} != shared ]]; then
    say "=== chaos: private stack with one MariaDB per shard"
    sp=$(free_ports 3)
    # shellcheck disable=SC2206
    SP=($sp)
    if shards_prepare "${SP[@]}" &&
        bash "$WORK/shards/ctl.sh" start 1 && bash "$WORK/shards/ctl.sh" start 2 &&
        bash "$WORK/shards/ctl.sh" start 3 &&
        shards_schema 1 && shards_schema 2 && shards_schema 3; then
        # the stack's own MariaDB serves shard 0 (stack_start applies the schema to it)
        SDIR=$WORK/sh
        LOGIC_EXTRA=$(printf 'mysql_shards = 127.0.0.1:@MYSQL_PORT@/im_0,127.0.0.1:%s/im_1,127.0.0.1:%s/im_2,127.0.0.1:%s/im_3' "${SP[@]}")
        export LOGIC_EXTRA
        if start_stack "$SDIR"; then
            (
                # shellcheck disable=SC1091
                source "$SDIR/env"
                run_driver shard_down \
                    "shard_stop=bash $WORK/shards/ctl.sh stop 2 && sleep $DB_OUT && bash $WORK/shards/ctl.sh start 2"
                echo "$PASSED $FAILED" >"$WORK/shard.counts"
            )
            read -r PASSED FAILED <"$WORK/shard.counts" || FAILED=$((FAILED + 1))
        else
            FAILED=$((FAILED + 1))
        fi
    else
        say "chaos: could not start the shard MariaDB servers"
        FAILED=$((FAILED + 1))
    fi
fi
finish
