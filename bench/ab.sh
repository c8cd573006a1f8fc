#!/usr/bin/env bash
# bench/ab.sh: an A/B comparison the way bench/RESULTS.md reports them. Each arm is a set of
# environment settings for deploy/stack.sh (another BIN with other binaries, another MariaDB
# sizing, ...). The arms run alternately, ROUNDS times, each on a freshly restarted private
# stack (its data kept between runs, so compare neighbours: later runs meet bigger tables),
# with one cim-bench command; one line per run with the figures that matter.
#
#   bash bench/ab.sh [ARM ...] -- CIM-BENCH-ARGS...
#   ARM = LABEL:VAR=VALUE[,VAR=VALUE...]   e.g. old:BIN=/tmp/old  small:STACK_MYSQL_POOL=256M
#
# cim-bench gets --gates, --api, --api-key-file and --run-dir of the stack; give the rest.
# Environment:
#   AB_ROUNDS     rounds (default 2: A B A B)
#   AB_WARM=1     one unmeasured run after each restart (a cold buffer pool otherwise)
#   AB_UID_STEP   if set, run i adds i*AB_UID_STEP to --uid-base (fresh users per run)
#   AB_STACK_DIR  stack directory (default /tmp/cim-ab); AB_PORT_BASE ports (default 4000:
#                 mysql 7306, redis 10379, logic http 12080, gates 12000 and 12010)
#   BIN           default build directory of the arms (default build); cim-bench comes from it
#
# Examples (the A/Bs in bench/RESULTS.md):
#   AB_WARM=1 bash bench/ab.sh small:STACK_MYSQL_POOL=256M,STACK_MYSQL_REDO=96M \
#       big:STACK_MYSQL_POOL=4G,STACK_MYSQL_REDO=1G -- --scenario p2p --users 1000 \
#       --duration 15 --rate 0 --inflight 2 --procs 1 --uid-base 730000000 --drain 30
#   AB_UID_STEP=1000000 bash bench/ab.sh old:BIN=/tmp/old new:BIN=build -- --scenario offline \
#       --users 200 --msgs 50000 --inflight 16 --duration 60 --procs 1 --uid-base 741000000
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1

ARMS=()
while (($#)) && [[ $1 != -- ]]; do
    ARMS+=("$1")
    shift
done
[[ ${1:-} == -- ]] && shift
if ((${#ARMS[@]} < 1 || $# < 1)); then
    sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
ARGS=("$@")

B=${AB_PORT_BASE:-4000}
export STACK_DIR=${AB_STACK_DIR:-/tmp/cim-ab} STACK_GATES=2 STACK_HOWTO=0
export STACK_MYSQL_PORT=$((B + 3306)) STACK_REDIS_PORT=$((B + 6379))
export STACK_LOGIC_NN=$((B + 7000)) STACK_LOGIC_HTTP=$((B + 8080))
export STACK_GATE_PORT=$((B + 8000)) STACK_GATE_WS=$((B + 8001))
export STACK_GATE_NN=$((B + 7100)) STACK_GATE_METRICS=$((B + 9100))
export STACK_LOG_LEVEL=${STACK_LOG_LEVEL:-warn}
export CIM_GATE_RATE=0 CIM_GATE_IP_CONN_RATE=0 CIM_API_RATE=0 CIM_LOGIN_FAIL_MAX_IP=1000000
DEFAULT_BIN=${BIN:-build}
LOGDIR=$STACK_DIR/ab-logs
mkdir -p "$LOGDIR"

uid_arg() { # the cim-bench arguments, --uid-base moved by run*AB_UID_STEP
    local run=$1 i out=()
    for ((i = 0; i < ${#ARGS[@]}; i++)); do
        if [[ -n ${AB_UID_STEP:-} && ${ARGS[i]} == --uid-base ]]; then
            out+=(--uid-base "$((ARGS[i + 1] + run * AB_UID_STEP))")
            i=$((i + 1))
        else
            out+=("${ARGS[i]}")
        fi
    done
    printf '%s\n' "${out[@]}"
}

summary() { # LABEL FILE: one line from cim-bench's RESULT
    python3 - "$1" "$2" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
text = open(path, errors="replace").read()
if "RESULT" not in text:
    print(label, "no RESULT line: see", path)
    sys.exit(0)
r = json.loads(text.rsplit("RESULT", 1)[1].strip().splitlines()[0])
out = [label, r.get("scenario", "?")]
for k in ("sent", "acked", "delivered", "lost", "dup", "acked_per_sec", "delivered_per_sec",
          "sync_per_sec", "logins_per_sec"):
    if k in r:
        out.append("%s=%s" % (k, r[k]))
for k in ("ack_ms", "deliver_ms", "login_ms", "time_to_last_ms"):
    if isinstance(r.get(k), dict) and r[k].get("n"):
        out.append("%s_p50/p99=%s/%s" % (k[:-3], r[k]["p50"], r[k]["p99"]))
cpu = {}
for s in r.get("servers", []):
    cpu[s["name"]] = cpu.get(s["name"], 0) + s["cpu_pct"]
out += ["cpu_%s=%.0f%%" % (k, v) for k, v in cpu.items()]
print(" ".join(out))
PY
}

run=0
for ((round = 1; round <= ${AB_ROUNDS:-2}; round++)); do
    for arm in "${ARMS[@]}"; do
        label=${arm%%:*}
        settings=${arm#*:}
        [[ $settings == "$arm" ]] && settings=""
        (
            export BIN=$DEFAULT_BIN
            if [[ -n $settings ]]; then
                IFS=, read -r -a kv <<<"$settings"
                for a in "${kv[@]}"; do export "${a?}"; done
            fi
            bash deploy/stack.sh stop >/dev/null 2>&1
            if ! bash deploy/stack.sh start >"$LOGDIR/start-$label-$round.log" 2>&1; then
                echo "$label: stack start failed: $LOGDIR/start-$label-$round.log"
                exit 1
            fi
            mapfile -t a < <(uid_arg "$run")
            common=(--gates "127.0.0.1:$STACK_GATE_PORT,127.0.0.1:$((STACK_GATE_PORT + 10))"
                --api "http://127.0.0.1:$STACK_LOGIC_HTTP" --api-key-file "$STACK_DIR/api_key"
                --run-dir "$STACK_DIR")
            if [[ ${AB_WARM:-0} == 1 ]]; then
                timeout 600 "$BIN/cim-bench" "${a[@]}" "${common[@]}" >"$LOGDIR/$label-$round-warm.log" 2>&1
            fi
            timeout 600 "$BIN/cim-bench" "${a[@]}" "${common[@]}" >"$LOGDIR/$label-$round.log" 2>&1
            summary "$label#$round" "$LOGDIR/$label-$round.log"
        )
        run=$((run + 1))
    done
done
bash deploy/stack.sh stop >/dev/null 2>&1
echo "logs: $LOGDIR"
