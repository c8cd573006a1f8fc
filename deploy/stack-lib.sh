# shellcheck shell=bash
# cim local stack: functions shared by deploy/stack.sh (make run / make stop) and tests/run.sh.
# Source it, then call stack_init once, then stack_start / stack_stop / stack_status.
#
# Everything lives under STACK_DIR (default <repo>/run):
#   mysql/{data,mysqld.sock,mysqld.pid,err.log}  redis/{redis.log,redis.pid}
#   NAME.pid  NAME.conf  log/NAME.log  api_key  token_secret
# NAME is mysql, redis, logic1..logicN, gate1..gateM.
#
# Settings (environment; defaults are the `make run` layout):
#   STACK_DIR         run/                 BIN               build/ (msg_gate, msg_logic)
#   STACK_HOST        127.0.0.1            STACK_LOGICS      1 (number of msg_logic)
#   STACK_MYSQL_PORT  13306                STACK_GATES       2 (number of msg_gate)
#   STACK_REDIS_PORT  16379
#   STACK_MYSQL_POOL  1G    (InnoDB buffer pool)   STACK_MYSQL_REDO  512M (InnoDB redo log size)
#   STACK_MYSQL_OPTS  more mariadbd options, e.g. "--performance-schema=ON" (split on spaces)
#   STACK_MYSQL_TCP=1 msg_logic reaches MariaDB over TCP (default: its Unix socket, cheaper)
#   STACK_MYSQL_CONNS mysql_pool of the logics (connections per shard) while MariaDB is reached
#                     by its socket (default 1: on one box, fewer threads and bigger batches cost
#                     less; bench/RESULTS.md); over TCP the logic's own default (2)
#   STACK_PREFIX (or PREFIX, unless that names a directory, like an install prefix): words put
#                     before the msg_gate / msg_logic command, e.g. "valgrind --log-file=x-{name}";
#                     "{name}" becomes NAME
#   STACK_LOGIC_NN    7000   STACK_LOGIC_HTTP  8080   (logic i adds 10*(i-1))
#   STACK_GATE_PORT   8000   STACK_GATE_WS     8001   STACK_GATE_NN 7100  STACK_GATE_METRICS 9100
#                                                     (gate i adds 10*(i-1))
#   per instance:     STACK_LOGIC<i>_NN, STACK_LOGIC<i>_HTTP, STACK_GATE<i>_PORT, _WS, _NN, _METRICS
#   STACK_LOG_LEVEL   info
#   STACK_LOGIC_EXTRA / STACK_GATE_EXTRA   extra "name = value" lines (newline separated) for
#                     the generated config files; a name given here replaces the default line
#   STACK_WAIT        seconds to wait for a process to answer (30)
#   STACK_STOP_WAIT   seconds to wait after SIGTERM before SIGKILL (20)
#   STACK_QUIET=1     no progress lines; STACK_HOWTO=0: no "how to chat" after start
# The caller's CIM_* environment passes through to msg_gate / msg_logic (they read CIM_<NAME>).

STACK_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# variables only the end-to-end tests use; never passed to the servers
STACK_TEST_VARS=(CIM_GATE1 CIM_GATE2 CIM_API CIM_API2 CIM_API_KEY CIM_MYSQL_SOCK CIM_MYSQL_PORT
    CIM_REDIS_PORT CIM_TEST_DIR CIM_BIN CIM_GATE1_WS CIM_GATE2_WS CIM_GATE1_METRICS
    CIM_GATE2_METRICS)

stack__abs() { # make a path absolute against the caller's cwd
    case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac
}

stack_init() {
    STACK_DIR=$(stack__abs "${STACK_DIR:-$STACK_REPO/run}")
    BIN=$(stack__abs "${BIN:-$STACK_REPO/build}")
    STACK_HOST=${STACK_HOST:-127.0.0.1}
    STACK_MYSQL_PORT=${STACK_MYSQL_PORT:-13306}
    STACK_REDIS_PORT=${STACK_REDIS_PORT:-16379}
    STACK_LOGICS=${STACK_LOGICS:-1}
    STACK_GATES=${STACK_GATES:-2}
    STACK_LOGIC_NN=${STACK_LOGIC_NN:-7000}
    STACK_LOGIC_HTTP=${STACK_LOGIC_HTTP:-8080}
    STACK_GATE_PORT=${STACK_GATE_PORT:-8000}
    STACK_GATE_WS=${STACK_GATE_WS:-8001}
    STACK_GATE_NN=${STACK_GATE_NN:-7100}
    STACK_GATE_METRICS=${STACK_GATE_METRICS:-9100}
    STACK_LOG_LEVEL=${STACK_LOG_LEVEL:-info}
    STACK_WAIT=${STACK_WAIT:-30}
    # InnoDB buffer pool and redo log: a pool that holds the hot index pages and a redo log
    # large enough that checkpoints do not force page flushes cut write I/O per message ~10x
    STACK_MYSQL_POOL=${STACK_MYSQL_POOL:-1G}
    STACK_MYSQL_REDO=${STACK_MYSQL_REDO:-512M}
    STACK_STOP_WAIT=${STACK_STOP_WAIT:-20}
    if [[ -z ${STACK_PREFIX:-} && -n ${PREFIX:-} && ! -d ${PREFIX%% *} ]]; then
        STACK_PREFIX=$PREFIX
    fi
    STACK_PREFIX=${STACK_PREFIX:-}
    STACK_MYSQL_DIR=$STACK_DIR/mysql
    STACK_MYSQL_SOCK=$STACK_MYSQL_DIR/mysqld.sock
    STACK_REDIS_DIR=$STACK_DIR/redis
    mkdir -p "$STACK_DIR/log" "$STACK_MYSQL_DIR/data" "$STACK_REDIS_DIR" || return 1
    if ((${#STACK_MYSQL_SOCK} > 100)); then
        stack__err "socket path too long (${#STACK_MYSQL_SOCK} > 100): $STACK_MYSQL_SOCK; use a shorter STACK_DIR"
        return 1
    fi
}

stack__say() { [[ ${STACK_QUIET:-0} == 1 ]] || printf 'stack: %s\n' "$*"; }
stack__err() { printf 'stack: error: %s\n' "$*" >&2; }

# --- per-instance settings -------------------------------------------------------------------

stack__inst() { # stack__inst NAME KEY -> value (KEY: NN HTTP PORT WS METRICS)
    local name=$1 key=$2 i var base
    i=${name//[!0-9]/}
    var="STACK_${name^^}_$key"
    if [[ -n ${!var:-} ]]; then
        printf '%s\n' "${!var}"
        return
    fi
    case $name in
        logic*) base="STACK_LOGIC_$key" ;;
        gate*) base="STACK_GATE_$key" ;;
    esac
    [[ $key == PORT ]] && base=STACK_GATE_PORT
    printf '%s\n' $((${!base} + 10 * (i - 1)))
}

stack_names() { # every configured instance, in start order
    local i
    echo mysql
    echo redis
    for ((i = 1; i <= STACK_LOGICS; i++)); do echo "logic$i"; done
    for ((i = 1; i <= STACK_GATES; i++)); do echo "gate$i"; done
}

stack__binword() { # what /proc/PID/cmdline of NAME contains
    case $1 in
        mysql) echo mariadbd ;;
        redis) echo redis-server ;;
        logic*) echo msg_logic ;;
        gate*) echo msg_gate ;;
        *) echo "$1" ;;
    esac
}

# pid of NAME if its pid file names a live process of the right kind (zombies count as dead)
stack_pid() {
    local name=$1 f="$STACK_DIR/$1.pid" pid st
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $st == Z || $st == X ]] && return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(stack__binword "$name")" || return 1
    printf '%s\n' "$pid"
}

stack__pid_alive() { # raw pid check (zombies count as dead)
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $st != Z && $st != X ]]
}

stack__logfile() {
    case $1 in
        mysql) echo "$STACK_MYSQL_DIR/err.log" ;;
        redis) echo "$STACK_REDIS_DIR/redis.log" ;;
        *) echo "$STACK_DIR/log/$1.log" ;;
    esac
}

stack__died() { # NAME: report a process that exited while starting
    local log
    log=$(stack__logfile "$1")
    stack__err "$1 exited while starting; last lines of $log:"
    # from the last "=== start" marker stack__launch wrote, at most 30 lines
    awk '/^=== .* start: /{n=0} {l[++n]=$0} END{for(i=(n>30?n-29:1);i<=n;i++) print l[i]}' \
        "$log" 2>/dev/null | sed 's/^/    /' >&2
    rm -f "$STACK_DIR/$1.pid"
}

# run a command detached (own session), stdin /dev/null, output appended to LOG; pid to NAME.pid
stack__launch() { # NAME LOG CMD...
    local name=$1 log=$2
    shift 2
    printf '=== %s start: %s\n' "$(date '+%F %T')" "$*" >>"$log"
    (
        cd "$STACK_REPO" || exit 1
        unset "${STACK_TEST_VARS[@]}"
        exec setsid "$@" </dev/null >>"$log" 2>&1 9>&-
    ) &
    echo $! >"$STACK_DIR/$name.pid"
}

# --- MariaDB ---------------------------------------------------------------------------------

stack__mysql() { mariadb --no-defaults -S "$STACK_MYSQL_SOCK" -uroot "$@"; }

stack_mysql_start() {
    local pid d=$STACK_MYSQL_DIR userarg=() opts=()
    if pid=$(stack_pid mysql); then
        stack__say "mysql already running (pid $pid)"
        return 0
    fi
    [[ $(id -u) == 0 ]] && userarg=(--user=root)
    read -r -a opts <<<"${STACK_MYSQL_OPTS:-}"
    if [[ ! -d $d/data/mysql ]]; then
        stack__say "mysql: initialising $d/data"
        if ! mariadb-install-db --no-defaults "${userarg[@]}" --datadir="$d/data" \
            --auth-root-authentication-method=normal --skip-test-db >"$d/init.log" 2>&1; then
            stack__err "mariadb-install-db failed, see $d/init.log"
            tail -n 20 "$d/init.log" >&2
            return 1
        fi
    fi
    stack__launch mysql "$d/stdout.log" mariadbd --no-defaults "${userarg[@]}" \
        --datadir="$d/data" --socket="$STACK_MYSQL_SOCK" --pid-file="$d/mysqld.pid" \
        --port="$STACK_MYSQL_PORT" --bind-address="$STACK_HOST" --skip-name-resolve \
        --log-error="$d/err.log" --innodb-flush-log-at-trx-commit=1 --max-connections=1000 \
        --innodb-buffer-pool-size="$STACK_MYSQL_POOL" --innodb-log-file-size="$STACK_MYSQL_REDO" \
        --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_general_ci "${opts[@]}"
    pid=$(<"$STACK_DIR/mysql.pid")
    local t=0 limit=$((STACK_WAIT > 60 ? STACK_WAIT * 10 : 600))
    until mariadb-admin --no-defaults -S "$STACK_MYSQL_SOCK" -uroot ping >/dev/null 2>&1; do
        if ! stack__pid_alive "$pid"; then
            stack__died mysql
            return 1
        fi
        if ((++t > limit)); then
            stack__err "mysql did not answer on $STACK_MYSQL_SOCK within $((limit / 10)) s"
            return 1
        fi
        sleep 0.1
    done
    stack__say "mysql up on $STACK_HOST:$STACK_MYSQL_PORT (pid $pid, socket $STACK_MYSQL_SOCK)"
}

stack_schema() { # create im_0..im_3 and apply sql/NNN_*.sql to each (files are idempotent)
    local n f files=()
    for f in "$STACK_REPO"/sql/[0-9][0-9][0-9]_*.sql; do
        [[ -e $f ]] && files+=("$f")
    done
    for n in 0 1 2 3; do
        stack__mysql -e "CREATE DATABASE IF NOT EXISTS im_$n CHARACTER SET utf8mb4" || return 1
        for f in "${files[@]}"; do
            if ! stack__mysql "im_$n" <"$f"; then
                stack__err "applying $(basename "$f") to im_$n failed"
                return 1
            fi
        done
    done
    stack__say "schema: ${#files[@]} file(s) applied to im_0..im_3"
}

# --- Redis -----------------------------------------------------------------------------------

stack_redis_start() {
    local pid d=$STACK_REDIS_DIR
    if pid=$(stack_pid redis); then
        stack__say "redis already running (pid $pid)"
        return 0
    fi
    stack__launch redis "$d/stdout.log" redis-server --port "$STACK_REDIS_PORT" \
        --bind "$STACK_HOST" --dir "$d" --daemonize no --pidfile "$d/redis.pid" \
        --logfile "$d/redis.log" --save "" --appendonly no
    pid=$(<"$STACK_DIR/redis.pid")
    local t=0
    until [[ $(redis-cli -h "$STACK_HOST" -p "$STACK_REDIS_PORT" ping 2>/dev/null) == PONG ]]; do
        if ! stack__pid_alive "$pid"; then
            stack__died redis
            return 1
        fi
        if ((++t > 300)); then
            stack__err "redis did not answer on $STACK_HOST:$STACK_REDIS_PORT within 30 s"
            return 1
        fi
        sleep 0.1
    done
    stack__say "redis up on $STACK_HOST:$STACK_REDIS_PORT (pid $pid)"
}

# --- secrets ---------------------------------------------------------------------------------

stack__secret() { # FILE NBYTES: random hex, created once, mode 600
    local f=$1
    [[ -s $f ]] && return 0
    (
        umask 077
        od -An -tx1 -N"$2" /dev/urandom | tr -d ' \n' >"$f.tmp" &&
            mv "$f.tmp" "$f"
    ) || return 1
    chmod 600 "$f"
}

stack_secrets() {
    stack__secret "$STACK_DIR/api_key" 16 && stack__secret "$STACK_DIR/token_secret" 32
}

stack_api_key() { tr -d ' \n' <"$STACK_DIR/api_key"; }

# --- msg_logic / msg_gate --------------------------------------------------------------------

# merge "name = value" lines: a later line with the same name replaces the earlier one in place
stack__merge_conf() {
    awk '
        /^[ \t]*(#|$)/ { lines[++n] = $0; next }
        {
            k = $0; sub(/[ \t]*=.*/, "", k); sub(/^[ \t]*/, "", k)
            if (k in pos) { lines[pos[k]] = $0; next }
            lines[++n] = $0; pos[k] = n
        }
        END { for (i = 1; i <= n; i++) print lines[i] }'
}

stack_conf() { # NAME: write STACK_DIR/NAME.conf
    local name=$1 i shards="" n
    i=${name//[!0-9]/}
    # the stack's MariaDB runs on this machine: its Unix socket ("localhost") saves the TCP stack
    local host=localhost
    [[ ${STACK_MYSQL_TCP:-0} == 1 ]] && host=$STACK_HOST
    for n in 0 1 2 3; do shards+="${shards:+,}$host:$STACK_MYSQL_PORT/im_$n"; done
    {
        echo "# $name: written by deploy/stack.sh on every start; see deploy/*.conf.sample"
        case $name in
            logic*)
                echo "logic_id = $i"
                echo "logic_nn_addr = tcp://$STACK_HOST:$(stack__inst "$name" NN)"
                echo "logic_http_port = $(stack__inst "$name" HTTP)"
                echo "redis_addr = $STACK_HOST:$STACK_REDIS_PORT"
                echo "mysql_shards = $shards"
                if [[ $host == localhost ]]; then
                    echo "mysql_socket = $STACK_MYSQL_SOCK"
                    echo "mysql_pool = ${STACK_MYSQL_CONNS:-1}"
                fi
                echo "mysql_user = root"
                echo "mysql_password ="
                echo "api_key_file = $STACK_DIR/api_key"
                echo "token_secret_file = $STACK_DIR/token_secret"
                echo "log_level = $STACK_LOG_LEVEL"
                if [[ -n ${STACK_LOGIC_EXTRA:-} ]]; then printf '%s\n' "$STACK_LOGIC_EXTRA"; fi
                ;;
            gate*)
                echo "gate_port = $(stack__inst "$name" PORT)"
                echo "gate_ws_port = $(stack__inst "$name" WS)"
                echo "gate_nn_addr = tcp://$STACK_HOST:$(stack__inst "$name" NN)"
                echo "gate_metrics_port = $(stack__inst "$name" METRICS)"
                echo "redis_addr = $STACK_HOST:$STACK_REDIS_PORT"
                echo "log_level = $STACK_LOG_LEVEL"
                if [[ -n ${STACK_GATE_EXTRA:-} ]]; then printf '%s\n' "$STACK_GATE_EXTRA"; fi
                ;;
        esac
    } | stack__merge_conf >"$STACK_DIR/$name.conf" || {
        stack__err "cannot write $STACK_DIR/$name.conf"
        return 1
    }
}

stack__health_url() {
    case $1 in
        logic*) echo "http://$STACK_HOST:$(stack__inst "$1" HTTP)/healthz" ;;
        gate*) echo "http://$STACK_HOST:$(stack__inst "$1" METRICS)/healthz" ;;
    esac
}

stack_proc_launch() { # NAME: start a msg_logic / msg_gate without waiting
    local name=$1 exe pid prefix=()
    if pid=$(stack_pid "$name"); then
        stack__say "$name already running (pid $pid)"
        return 0
    fi
    case $name in
        logic*) exe=$BIN/msg_logic ;;
        gate*) exe=$BIN/msg_gate ;;
        *)
            stack__err "unknown process $name"
            return 1
            ;;
    esac
    if [[ ! -x $exe ]]; then
        stack__err "$exe not found or not executable (build it first: make, or set BIN=dir)"
        return 1
    fi
    stack_conf "$name" || return 1
    if [[ -n $STACK_PREFIX ]]; then
        # shellcheck disable=SC2206 # the prefix is a word list on purpose
        prefix=(${STACK_PREFIX//\{name\}/$name})
    fi
    stack__launch "$name" "$STACK_DIR/log/$name.log" "${prefix[@]}" "$exe" -c "$STACK_DIR/$name.conf"
    STACK__LAUNCHED+=" $name"
}

stack__live_logics() { # how many logicN of this stack run
    local f k=0
    for f in "$STACK_DIR"/logic*.pid; do
        [[ -e $f ]] || continue
        stack_pid "$(basename "$f" .pid)" >/dev/null && k=$((k + 1))
    done
    echo "$k"
}

# NAME: wait until it answers its /healthz with 2xx; a gate also accepts on its client TCP port,
# and when its /healthz reports "logics":K, K must reach the number of running msg_logic
stack_proc_wait() {
    local name=$1 url code=000 t=0 limit=$((STACK_WAIT * 10)) pid tcp="" body want=0 k
    pid=$(cat "$STACK_DIR/$name.pid" 2>/dev/null) || return 1
    url=$(stack__health_url "$name")
    if [[ $name == gate* ]]; then
        tcp=$(stack__inst "$name" PORT)
        want=$(stack__live_logics)
    fi
    body=$STACK_DIR/.health.$name
    while :; do
        if ! stack__pid_alive "$pid"; then
            stack__died "$name"
            rm -f "$body"
            return 1
        fi
        code=$(curl -s -o "$body" -m 2 -w '%{http_code}' "$url" 2>/dev/null) || true
        if [[ $code == 2?? ]]; then
            k=$(grep -o '"logics": *[0-9]*' "$body" 2>/dev/null | grep -o '[0-9]*$')
            if [[ -z $k || $k -ge $want ]] &&
                { [[ -z $tcp ]] || (exec 3<>"/dev/tcp/$STACK_HOST/$tcp") 2>/dev/null; }; then
                break
            fi
            code="$code (logics $k of $want)"
        fi
        if ((++t > limit)); then
            rm -f "$body"
            if [[ $code != 000 && -n $code ]]; then
                stack__say "warning: $name answers $url with HTTP $code after $STACK_WAIT s; going on"
                return 0
            fi
            stack__err "$name (pid $pid) did not answer $url within $STACK_WAIT s; see $(stack__logfile "$name")"
            return 1
        fi
        sleep 0.1
    done
    rm -f "$body"
    stack__say "$name up (pid $pid, $url)"
}

# --- whole stack -----------------------------------------------------------------------------

stack__lock() {
    exec 9>"$STACK_DIR/.lock"
    flock -w 300 9 || {
        stack__err "another stack.sh holds $STACK_DIR/.lock"
        return 1
    }
}

stack_start_one() { # NAME
    case $1 in
        mysql) stack_mysql_start ;;
        redis) stack_redis_start ;;
        logic* | gate*)
            STACK__LAUNCHED=""
            stack_proc_launch "$1" || return 1
            [[ -z $STACK__LAUNCHED ]] || stack_proc_wait "$1"
            ;;
        *)
            stack__err "unknown process $1 (mysql, redis, logicN, gateN)"
            return 1
            ;;
    esac
}

# start everything that is not running; with names, only those
stack_start() {
    local n rc=0 tier
    stack__lock || return 1
    if (($# > 0)); then
        for n in "$@"; do stack_start_one "$n" || rc=1; done
        return $rc
    fi
    stack_mysql_start || return 1
    stack_redis_start || return 1
    stack_schema || return 1
    stack_secrets || return 1
    for tier in logic gate; do
        STACK__LAUNCHED=""
        for n in $(stack_names); do
            [[ $n == "$tier"* ]] || continue
            stack_proc_launch "$n" || rc=1
        done
        for n in $STACK__LAUNCHED; do stack_proc_wait "$n" || rc=1; done
        ((rc == 0)) || return 1
    done
    return 0
}

stack__wait_gone() { # PID SECONDS -> 0 gone, 1 still there
    local t=0
    while stack__pid_alive "$1"; do
        ((++t > $2 * 10)) && return 1
        sleep 0.1
    done
    return 0
}

# names with a pid file plus the configured ones, in stop order: gates, logics, redis, mysql
stack__stop_order() {
    local all f n
    all=$(
        stack_names
        for f in "$STACK_DIR"/*.pid; do
            [[ -e $f ]] && basename "$f" .pid
        done
    )
    for n in $(printf '%s\n' "$all" | grep '^gate' | sort -u -V); do echo "$n"; done
    for n in $(printf '%s\n' "$all" | grep '^logic' | sort -u -V); do echo "$n"; done
    printf '%s\n' "$all" | grep -qx redis && echo redis
    printf '%s\n' "$all" | grep -qx mysql && echo mysql
}

stack__stop_group() { # SIGNAL NAME... : signal all, then wait for all
    local sig=$1 n pid pids=() names=()
    shift
    for n in "$@"; do
        if pid=$(stack_pid "$n"); then
            kill "-$sig" "$pid" 2>/dev/null
            pids+=("$pid")
            names+=("$n")
        else
            rm -f "$STACK_DIR/$n.pid"
        fi
    done
    local i
    for i in "${!pids[@]}"; do
        if ! stack__wait_gone "${pids[$i]}" "$STACK_STOP_WAIT"; then
            stack__say "${names[$i]} (pid ${pids[$i]}) still running after $STACK_STOP_WAIT s: SIGKILL"
            kill -KILL "${pids[$i]}" 2>/dev/null
            stack__wait_gone "${pids[$i]}" 10
        fi
        rm -f "$STACK_DIR/${names[$i]}.pid"
        stack__say "${names[$i]} stopped"
    done
}

# stop everything (or the named processes) gracefully
stack_stop() {
    local order n
    stack__lock || return 1
    if (($# > 0)); then
        for n in "$@"; do stack__stop_group TERM "$n"; done
        return 0
    fi
    order=$(stack__stop_order)
    # shellcheck disable=SC2046
    stack__stop_group TERM $(printf '%s\n' "$order" | grep '^gate')
    # shellcheck disable=SC2046
    stack__stop_group TERM $(printf '%s\n' "$order" | grep '^logic')
    stack__stop_group TERM redis
    stack__stop_group TERM mysql
    return 0
}

stack_kill() { # NAME...: SIGKILL, no grace (crash tests)
    local n pid
    stack__lock || return 1
    for n in "$@"; do
        if pid=$(stack_pid "$n"); then
            kill -KILL "$pid" 2>/dev/null
            stack__wait_gone "$pid" 10
            stack__say "$n killed"
        fi
        rm -f "$STACK_DIR/$n.pid"
    done
}

stack_status() { # prints one line per process; returns 0 if all configured ones run
    local n pid rc=0
    for n in mysql redis $(stack__stop_order | grep '^logic') $(stack__stop_order | grep '^gate'); do
        if pid=$(stack_pid "$n"); then
            printf '%-8s running  pid %s\n' "$n" "$pid"
        else
            printf '%-8s stopped\n' "$n"
            rc=1
        fi
    done
    return $rc
}

stack_howto() {
    local i n
    cat <<EOF

cim is up (data, logs, pids and keys in $STACK_DIR/).
Chat from a terminal:
EOF
    for ((i = 1; i <= STACK_GATES; i++)); do
        n="gate$i"
        printf '  ./build/cim --gate %s:%s%s\n' "$STACK_HOST" "$(stack__inst "$n" PORT)" \
            "$([[ $i == 1 ]] || echo "    (gate $i)")"
    done
    cat <<EOF
Web page:     http://$STACK_HOST:$(stack__inst gate1 WS)/
Business API: http://$STACK_HOST:$(stack__inst logic1 HTTP)/  (Authorization: Bearer \$(cat $STACK_DIR/api_key))
Logs:         $STACK_DIR/log/NAME.log    Stop: make stop
EOF
}
