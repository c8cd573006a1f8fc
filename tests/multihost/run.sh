#!/usr/bin/env bash
# Multi-host test of cim, built from network namespaces on this machine (root needed).
#
#   BIN=build/h9 bash tests/multihost/run.sh        (BIN: dir with msg_gate, msg_logic, libcim.a)
#
# Hosts (one network namespace each, all on one bridge that lives in its own namespace, subnet
# 10.203.0.0/24; nothing is added to the root namespace and no traffic leaves the machine):
#   redis 10.203.0.10      db0..db3 10.203.0.20-23 (MariaDB, one shard database im_N each)
#   gate1..3 10.203.0.31-33   logic1..3 10.203.0.41-43 (logic3 joins under load)
#   cli1..3 10.203.0.51-53 (clients)   ctl 10.203.0.5 (business API calls, /metrics scrapes)
# Client hosts resolve the one name gate.cim to the three gates (/etc/netns/NS/hosts); glibc
# sorts the A records (RFC 3484), so the agent, like a client picking one at random, starts
# each user at another of the resolved addresses: the users of every host land on every gate.
#
# Scenario: users and a group made through the business API; an mh_agent per client host
# chats 1:1 and in the group through gate.cim; gate1's host is taken down (its link deleted,
# a hard failure: no FIN, no RST) and its clients reconnect to another gate, sync by seq and
# resend; logic3 is started under load; at the end every user syncs its whole inbox and checks
# that every acked message addressed to it is there once, with seqs 1..max without gaps.
#
# Settings: BIN (default build), MH_RATE (messages/s per user, 10), MH_USERS (per client host,
# 4), MH_KEEP=1 keeps the temp dir, MH_TIMEOUT (whole run, s, 420).
# Ends with "N passed, N failed"; exit status 0 only when nothing failed.
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BIN:-build}
case $BIN in /*) ;; *) BIN=$REPO/$BIN ;; esac
RATE=${MH_RATE:-10}
UPH=${MH_USERS:-4}
MH_TIMEOUT=${MH_TIMEOUT:-420}

PASS=0
FAIL=0
ok() {
    PASS=$((PASS + 1))
    printf 'ok   %s\n' "$*"
}
bad() {
    FAIL=$((FAIL + 1))
    printf 'FAIL %s\n' "$*"
}
check() { # check "description" command...
    local d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}
say() { printf '==   %s\n' "$*"; }
finish() {
    printf '%d passed, %d failed\n' "$PASS" "$FAIL"
    [[ $FAIL == 0 ]]
    exit $?
}

if [[ $(id -u) != 0 ]]; then
    bad "multihost: needs root (ip netns)"
    finish
fi
for b in msg_gate msg_logic libcim.a; do
    if [[ ! -e $BIN/$b ]]; then
        bad "multihost: $BIN/$b missing (make BUILD=${BIN#"$REPO"/} bins)"
        finish
    fi
done
for t in ip mariadbd mariadb-install-db redis-server redis-cli curl jq getent; do
    if ! command -v "$t" >/dev/null; then
        bad "multihost: $t not installed"
        finish
    fi
done

# ------------------------------------------------------------------------------- resources
TAG=mh$(printf '%04x' $(($$ % 65536)))
TMP=$(mktemp -d /tmp/cim-mh.XXXXXX)
NETS=()     # namespaces created
PIDS=()     # processes started (pids of `ip netns exec` wrappers that exec the program)
declare -A PID_OF
SUBNET=10.203.0
SW=$TAG-sw

cleanup() {
    local p n t
    trap - EXIT INT TERM
    # stop what we started: TERM, wait up to 8 s, KILL
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for ((t = 0; t < 80; t++)); do
        n=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && n=1; done
        ((n == 0)) && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    # anything left inside our own namespaces (children of what we started)
    for n in "${NETS[@]}"; do
        for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    done
    for n in "${NETS[@]}"; do
        ip netns del "$n" 2>/dev/null
        rm -rf "/etc/netns/$n"
    done
    if [[ ${MH_KEEP:-0} == 1 ]]; then
        echo "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# the whole run is bounded: a watchdog ends it (the EXIT trap cleans up)
(
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$MH_TIMEOUT" >/dev/null 2>&1 &
    sp=$!
    wait "$sp" || exit 0
    echo "multihost: run exceeded $MH_TIMEOUT s, stopping" >&2
    kill -TERM $$ 2>/dev/null
) </dev/null &
WATCHDOG=$!
PIDS+=("$WATCHDOG")

ns_exec() { local n=$1; shift; ip netns exec "$TAG-$n" "$@"; }

declare -A IP=([ctl]=$SUBNET.5 [redis]=$SUBNET.10
    [db0]=$SUBNET.20 [db1]=$SUBNET.21 [db2]=$SUBNET.22 [db3]=$SUBNET.23
    [gate1]=$SUBNET.31 [gate2]=$SUBNET.32 [gate3]=$SUBNET.33
    [logic1]=$SUBNET.41 [logic2]=$SUBNET.42 [logic3]=$SUBNET.43
    [cli1]=$SUBNET.51 [cli2]=$SUBNET.52 [cli3]=$SUBNET.53)
HOSTS=(ctl redis db0 db1 db2 db3 gate1 gate2 gate3 logic1 logic2 logic3 cli1 cli2 cli3)

# ------------------------------------------------------------------------------- network
net_up() {
    local i=0 h n
    ip netns add "$SW" || return 1
    NETS+=("$SW")
    ip -n "$SW" link set lo up &&
        ip -n "$SW" link add br0 type bridge &&
        ip -n "$SW" link set br0 up || return 1
    for h in "${HOSTS[@]}"; do
        n=$TAG-$h
        ip netns add "$n" || return 1
        NETS+=("$n")
        i=$((i + 1))
        # the host's eth0, its peer on the switch: created inside the namespaces, never in root
        ip -n "$n" link add eth0 type veth peer name "p$i" netns "$SW" || return 1
        ip -n "$SW" link set "p$i" master br0 && ip -n "$SW" link set "p$i" up || return 1
        ip -n "$n" link set lo up &&
            ip -n "$n" addr add "${IP[$h]}/24" dev eth0 &&
            ip -n "$n" link set eth0 up || return 1
    done
}

hosts_file() { # NS ORDER...: /etc/netns/NS/hosts with gate.cim -> the gates in ORDER
    local h=$1 g
    shift
    mkdir -p "/etc/netns/$TAG-$h"
    {
        echo "127.0.0.1 localhost"
        for g in "$@"; do echo "${IP[$g]} gate.cim"; done
        for g in "${HOSTS[@]}"; do echo "${IP[$g]} $g.cim"; done
    } >"/etc/netns/$TAG-$h/hosts"
}

# start a program in host H, logging to $TMP/log/NAME.log; remembers its pid as NAME
start_in() { # NAME HOST CMD...
    local name=$1 h=$2
    shift 2
    ip netns exec "$TAG-$h" setsid "$@" </dev/null >>"$TMP/log/$name.log" 2>&1 &
    PID_OF[$name]=$!
    PIDS+=("$!")
    [[ $name == agent* ]] || disown "$!"
}

alive() { kill -0 "${PID_OF[$1]}" 2>/dev/null; }

wait_for() { # SECONDS CMD...: poll every 0.2 s
    local t=$(($1 * 5))
    shift
    local rc
    while ((t-- > 0)); do
        "$@"
        rc=$?
        ((rc == 0)) && return 0
        ((rc == 2)) && return 1
        sleep 0.2
    done
    return 1
}

# ------------------------------------------------------------------------------- servers
mysql_init() { # N: a private datadir (run in parallel; a bootstrap that crashes is retried)
    local d=$TMP/db$1 try
    for try in 1 2 3; do
        rm -rf "$d/data"
        mkdir -p "$d/data"
        if mariadb-install-db --no-defaults --user=root --datadir="$d/data" \
            --auth-root-authentication-method=normal --skip-test-db >"$d/init.log" 2>&1 &&
            ! grep -q 'got signal' "$d/init.log"; then
            return 0
        fi
        cp "$d/init.log" "$d/init.log.$try"
    done
    return 1
}

mysql_start() { # N
    local n=$1 d=$TMP/db$1
    start_in "db$n" "db$n" mariadbd --no-defaults --user=root --datadir="$d/data" \
        --socket="$d/s.sock" --pid-file="$d/mysqld.pid" --port=3306 \
        --bind-address="${IP[db$n]}" --skip-name-resolve --log-error="$d/err.log" \
        --innodb-flush-log-at-trx-commit=1 --max-connections=500 \
        --innodb-buffer-pool-size=64M --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_general_ci
}

mysql_ready() { # N: answers (returns 0), or keeps waiting; gives up at once if mariadbd died
    alive "db$1" || return 2
    mariadb-admin --no-defaults -S "$TMP/db$1/s.sock" -uroot ping >/dev/null 2>&1
}

mysql_schema() { # N: database im_N with sql/*.sql, a user for the logics (password by file)
    local n=$1 f pw
    pw=$(<"$TMP/secrets/mysql_password")
    {
        echo "CREATE DATABASE IF NOT EXISTS im_$n CHARACTER SET utf8mb4;"
        echo "CREATE USER IF NOT EXISTS 'cim'@'$SUBNET.%' IDENTIFIED BY '$pw';"
        echo "GRANT ALL PRIVILEGES ON im_$n.* TO 'cim'@'$SUBNET.%';"
    } | mariadb --no-defaults -S "$TMP/db$n/s.sock" -uroot || return 1
    for f in "$REPO"/sql/[0-9][0-9][0-9]_*.sql; do
        mariadb --no-defaults -S "$TMP/db$n/s.sock" -uroot "im_$n" <"$f" || return 1
    done
}

secrets() {
    mkdir -p "$TMP/secrets"
    (
        umask 077
        od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$TMP/secrets/api_key"
        od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$TMP/secrets/token_secret"
        od -An -tx1 -N12 /dev/urandom | tr -d ' \n' >"$TMP/secrets/mysql_password"
    )
}

SHARDS="${IP[db0]}:3306/im_0,${IP[db1]}:3306/im_1,${IP[db2]}:3306/im_2,${IP[db3]}:3306/im_3"

logic_start() { # K
    local k=$1 c=$TMP/logic$1.conf
    cat >"$c" <<EOF
logic_nn_addr = tcp://${IP[logic$k]}:7000
logic_http_port = 8080
redis_addr = ${IP[redis]}:6379
mysql_shards = $SHARDS
mysql_user = cim
mysql_password_file = $TMP/secrets/mysql_password
api_key_file = $TMP/secrets/api_key
token_secret_file = $TMP/secrets/token_secret
pwhash_level = 0
log_level = info
EOF
    start_in "logic$k" "logic$k" "$BIN/msg_logic" -c "$c"
}

gate_start() { # K
    local k=$1 c=$TMP/gate$1.conf
    cat >"$c" <<EOF
gate_port = 8000
gate_ws_port = 8001
gate_nn_addr = tcp://${IP[gate$k]}:7100
gate_metrics_port = 9100
redis_addr = ${IP[redis]}:6379
log_level = info
EOF
    start_in "gate$k" "gate$k" "$BIN/msg_gate" -c "$c"
}

ctl_curl() { ns_exec ctl curl -s -m 5 "$@"; }

logic_healthy() { [[ $(ctl_curl -o /dev/null -w '%{http_code}' "http://${IP[logic$1]}:8080/healthz") == 200 ]]; }
gate_logics() { ctl_curl "http://${IP[gate$1]}:9100/healthz" | jq -r '.logics // empty' 2>/dev/null; }
gate_conns() { ctl_curl "http://${IP[gate$1]}:9100/healthz" | jq -r '.connections // 0' 2>/dev/null; }
gate_sees() { # K N: gate K's /healthz reports N logics
    [[ $(gate_logics "$1") == "$2" ]]
}
metric() { # URL NAME: sum of the series NAME (any labels)
    ctl_curl "$1" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d\n", s }'
}

api() { # METHOD PATH [BODY]
    local key
    key=$(<"$TMP/secrets/api_key")
    ctl_curl -X "$1" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
        ${3:+--data "$3"} "http://${IP[logic1]}:8080$2"
}

acked_count() { cat "$TMP"/agents/acked.* 2>/dev/null | wc -l; }

# =============================================================================== run
mkdir -p "$TMP/log" "$TMP/agents"
say "temp dir $TMP, namespaces $TAG-*"

if net_up; then ok "network: ${#HOSTS[@]} hosts on one bridge ($SUBNET.0/24, own namespaces)"; else
    bad "network: cannot build the namespaces"
    finish
fi

for h in cli1 cli2 cli3 ctl; do hosts_file "$h" gate1 gate2 gate3; done
for h in cli1 cli2 cli3; do
    check "dns: $h resolves gate.cim to the 3 gates" \
        test "$(ns_exec "$h" getent ahostsv4 gate.cim | awk '$2 == "STREAM" {print $1}' | sort -u | tr '\n' ' ')" = "${IP[gate1]} ${IP[gate2]} ${IP[gate3]} "
done

# ---- MariaDB x4 and Redis
secrets
say "starting 4 MariaDB hosts and Redis"
init_pids=()
for n in 0 1 2 3; do
    mysql_init "$n" &
    init_pids+=("$!")
done
dbok=1
for p in "${init_pids[@]}"; do wait "$p" || dbok=0; done
for n in 0 1 2 3; do mysql_start "$n"; done
start_in redis redis redis-server --port 6379 --bind "${IP[redis]}" --dir "$TMP" \
    --daemonize no --save "" --appendonly no --protected-mode no --logfile "$TMP/log/redis-server.log"
for n in 0 1 2 3; do
    if wait_for 60 mysql_ready "$n" && mysql_schema "$n"; then :; else
        dbok=0
        tail -5 "$TMP/db$n/err.log" 2>/dev/null
    fi
done
if ((dbok)); then ok "mysql: 4 MariaDB hosts, one shard database each (im_N + sql/*.sql)"; else
    bad "mysql: a MariaDB host did not start"
    finish
fi
check "mysql: db2 holds only im_2" \
    test "$(mariadb --no-defaults -S "$TMP/db2/s.sock" -uroot -N -e "SHOW DATABASES LIKE 'im\\_%'")" = im_2
check "mysql: logic1 host reaches db3 over TCP as cim (password file)" \
    ns_exec logic1 mariadb --no-defaults -h "${IP[db3]}" -P 3306 -ucim \
    -p"$(<"$TMP/secrets/mysql_password")" -N -e 'SELECT 1' im_3 >/dev/null
check "redis: up on ${IP[redis]}:6379" \
    wait_for 20 bash -c "[[ \$(ip netns exec $TAG-ctl redis-cli -h ${IP[redis]} ping 2>/dev/null) == PONG ]]"

tcp_open() { ns_exec "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; }
check "network: cli1 reaches redis and db0..db3 over the bridge" \
    bash -c "$(declare -f tcp_open ns_exec); TAG=$TAG; tcp_open cli1 ${IP[redis]} 6379 && tcp_open cli1 ${IP[db0]} 3306 && tcp_open cli1 ${IP[db1]} 3306 && tcp_open cli1 ${IP[db2]} 3306 && tcp_open cli1 ${IP[db3]} 3306"

# ---- logics, gates
say "starting logic1, logic2, gate1..3"
logic_start 1
logic_start 2
if wait_for 40 logic_healthy 1 && wait_for 20 logic_healthy 2; then ok "logic: logic1 and logic2 answer /healthz"; else
    bad "logic: not healthy"
    tail -20 "$TMP/log/logic1.log"
    finish
fi
for k in 1 2 3; do gate_start "$k"; done
for k in 1 2 3; do
    check "gate: gate$k sees 2 logics" wait_for 30 gate_sees "$k" 2
done
zcard() { ns_exec ctl redis-cli -h "${IP[redis]}" ZCARD "$1" 2>/dev/null; }
check "registry: 3 gates in Redis (cim:gates)" wait_for 10 bash -c "[[ \$(ip netns exec $TAG-ctl redis-cli -h ${IP[redis]} ZCARD cim:gates) == 3 ]]"
check "registry: 2 logics in Redis (cim:logics)" test "$(zcard cim:logics)" = 2

# ---- users and a group through the business API
NUSERS=$((3 * UPH))
UIDS=()
TOKS=()
for ((i = 0; i < NUSERS; i++)); do
    r=$(api POST /api/v1/users "{\"nick_name\":\"mh$i\"}")
    u=$(jq -r '.user_id // empty' <<<"$r" 2>/dev/null)
    t=$(jq -r '.token // empty' <<<"$r" 2>/dev/null)
    [[ -n $u && -n $t ]] || break
    UIDS+=("$u")
    TOKS+=("$t")
done
if [[ ${#UIDS[@]} == "$NUSERS" ]]; then ok "api: $NUSERS users created"; else
    bad "api: user creation failed: ${r:-}"
    finish
fi
members=$(
    IFS=,
    echo "${UIDS[*]}"
)
r=$(api POST /api/v1/groups "{\"owner_id\":${UIDS[0]},\"group_name\":\"multihost\",\"member_ids\":[$members]}")
GID=$(jq -r '.group_id // empty' <<<"$r" 2>/dev/null)
if [[ -n $GID ]]; then ok "api: group $GID with $NUSERS members"; else
    bad "api: group creation failed: $r"
    GID=0
fi
shards_used=0
for n in 0 1 2 3; do
    c=$(mariadb --no-defaults -S "$TMP/db$n/s.sock" -uroot -N -e "SELECT COUNT(*) FROM im_user" "im_$n" 2>/dev/null)
    [[ ${c:-0} -gt 0 ]] && shards_used=$((shards_used + 1))
done
check "placement: the users are spread over the 4 shard hosts ($shards_used of 4 hold users)" \
    test "$shards_used" -ge 3

# ---- the client agent
AGENT=$TMP/mh_agent
# shellcheck disable=SC2046
if cc -std=gnu11 -O2 -Wall -Wextra -I "$REPO/client" -I "$BIN/gen" \
    "$REPO/tests/multihost/mh_agent.c" "$BIN/libcim.a" \
    $(pkg-config --cflags --libs libuv libprotobuf-c hiredis libmariadb libsodium libmicrohttpd jansson libcurl libssl libcrypto) \
    -lnanomsg -lpthread -lm -o "$AGENT" 2>"$TMP/log/agent-build.log"; then
    ok "client: mh_agent built against $BIN/libcim.a"
else
    bad "client: mh_agent did not build"
    cat "$TMP/log/agent-build.log"
    finish
fi

say "agents on cli1..3 chat through gate.cim ($UPH users each, $RATE msgs/s per user)"
for a in 1 2 3; do
    ul=""
    for ((j = 0; j < UPH; j++)); do
        i=$(((a - 1) * UPH + j))
        ul+="${ul:+,}${UIDS[$i]}:${TOKS[$i]}"
    done
    start_in "agent$a" "cli$a" timeout $((MH_TIMEOUT - 30)) "$AGENT" --name "cli$a" \
        --dir "$TMP/agents" --gate gate.cim:8000 --agents 3 --group "$GID" --users "$ul" \
        --peers "$members" --rate "$RATE" --timeout $((MH_TIMEOUT - 40)) --start $((a - 1))
done
ready() { [[ -e $TMP/agents/ready.cli1 && -e $TMP/agents/ready.cli2 && -e $TMP/agents/ready.cli3 ]]; }
check "client: 3 agents logged in" wait_for 30 ready
sleep 3
dist=""
spread=1
for k in 1 2 3; do
    c=$(gate_conns "$k")
    dist+=" gate$k=$c"
    [[ ${c:-0} -gt 0 ]] || spread=0
done
check "client: connections on every gate (${dist# })" test "$spread" = 1
before_g1=$(cat "$TMP"/log/agent?.log | grep -c "gate ${IP[gate1]}:8000\$")
n0=$(acked_count)
sleep 3
n1=$(acked_count)
check "traffic: messages acked ($((n1 - n0)) in 3 s)" test $((n1 - n0)) -gt 0

# ---- gate1's host goes down hard
say "taking gate1's host down (its link is deleted; the gate process is cut off)"
ip -n "$TAG-gate1" link del eth0
t0=$(date +%s)
nmoved() { cat "$TMP"/log/agent?.log | grep -c '(moved)'; }
moved() { [[ $(nmoved) -ge $before_g1 ]]; }
if wait_for 40 moved; then
    ok "failover: the $before_g1 clients of gate1 reconnected to another gate in $(($(date +%s) - t0)) s"
else
    bad "failover: clients of gate1 did not move ($(nmoved) of $before_g1)"
fi
# live entries only: an expired gate stays listed (score in the past) for a minute on purpose
check "failover: gate1's registration lapsed (2 live in cim:gates)" wait_for 15 bash -c "[[ \$(ip netns exec $TAG-ctl redis-cli -h ${IP[redis]} ZCOUNT cim:gates \$(date +%s%3N) +inf) == 2 ]]"
check "failover: gate2 and gate3 healthy" bash -c "[[ -n \$(ip netns exec $TAG-ctl curl -s -m 3 http://${IP[gate2]}:9100/healthz) && -n \$(ip netns exec $TAG-ctl curl -s -m 3 http://${IP[gate3]}:9100/healthz) ]]"
n0=$(acked_count)
sleep 4
n1=$(acked_count)
check "failover: traffic keeps flowing ($((n1 - n0)) acked in 4 s)" test $((n1 - n0)) -gt 0
conn_after=$(($(gate_conns 2) + $(gate_conns 3)))
check "failover: gate2+gate3 hold all $NUSERS connections ($conn_after)" test "$conn_after" -ge "$NUSERS"

# ---- a third logic joins under load
say "starting logic3 under load"
logic_start 3
check "scale: logic3 answers /healthz" wait_for 40 logic_healthy 3
check "scale: gate2 sees 3 logics" wait_for 20 gate_sees 2 3
check "scale: gate3 sees 3 logics" wait_for 20 gate_sees 3 3
n0=$(acked_count)
sleep 6
n1=$(acked_count)
check "scale: traffic keeps flowing ($((n1 - n0)) acked in 6 s)" test $((n1 - n0)) -gt 0
ctl_curl "http://${IP[logic3]}:8080/metrics" >"$TMP/log/logic3.metrics"
l3=$(awk '$1 == "cim_logic_msgs_acked_total" {print $2 + 0}' "$TMP/log/logic3.metrics")
check "scale: logic3 stores and acks messages (cim_logic_msgs_acked_total ${l3:-none})" \
    test "${l3:-0}" -gt 0

# ---- stop, flush, verify
for k in 2 3; do ctl_curl "http://${IP[gate$k]}:9100/metrics" >"$TMP/log/gate$k.metrics"; done
for k in 1 2; do ctl_curl "http://${IP[logic$k]}:8080/metrics" >"$TMP/log/logic$k.metrics"; done
say "stopping traffic; every user syncs its inbox and checks it"
touch "$TMP/agents/stop"
for a in 1 2 3; do
    wait "${PID_OF[agent$a]}"
    rc=$?
    s=$(grep '^summary' "$TMP/log/agent$a.log" | tail -1)
    grep -E '^(result|agent .*(missing|never|refused|failed))' "$TMP/log/agent$a.log" | sed 's/^/     /'
    if [[ $rc == 0 && $s == *" ok "* ]]; then ok "verify: cli$a: ${s#summary }"; else
        bad "verify: cli$a (exit $rc): ${s:-no summary}"
    fi
done
res=$(cat "$TMP"/log/agent?.log | grep '^result')
tot=$(awk '{for (i = 1; i < NF; i++) if ($i == "expected") s += $(i + 1)} END {print s + 0}' <<<"$res")
mis=$(awk '{for (i = 1; i < NF; i++) if ($i == "missing") s += $(i + 1)} END {print s + 0}' <<<"$res")
check "verify: $tot expected inbox entries over $NUSERS users, $mis missing" test "$mis" = 0 -a "$tot" -gt 0
nrec=$(awk '{for (i = 1; i < NF; i++) if ($i == "reconnects") s += $(i + 1)} END {print s + 0}' <<<"$res")
check "verify: the users of gate1 are among them ($nrec reconnects, $before_g1 users were on gate1)" \
    test "$nrec" -ge "$before_g1" -a "$before_g1" -gt 0

# ---- nothing crashed
dead=""
for p in db0 db1 db2 db3 redis logic1 logic2 logic3 gate2 gate3; do
    alive "$p" || dead+=" $p"
done
check "alive: MariaDB x4, Redis, logic1..3, gate2, gate3 still running${dead:+ (exited:$dead)}" \
    test -z "$dead"
if grep -qiE 'AddressSanitizer|runtime error|assert' "$TMP"/log/logic*.log "$TMP"/log/gate*.log; then
    bad "logs: sanitizer or assertion messages in the server logs"
else
    ok "logs: no sanitizer or assertion messages"
fi
finish
