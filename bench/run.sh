#!/usr/bin/env bash
# make bench: start a local stack (deploy/stack.sh, like `make run`), run every cim-bench scenario
# with moderate sizes, write bench/RESULTS.md and (with gnuplot) bench/*.png.
#
# Environment:
#   BIN              build directory with msg_gate, msg_logic, cim-bench (default build)
#   BENCH_STACK_DIR  stack directory (default run/, i.e. the `make run` stack; a running stack
#                    there is reused). Use e.g. /tmp/h6-run plus STACK_*_PORT to stay private.
#   BENCH_GATES      gates to start (default 6: 100k idle connections need > 5 x 20k fds)
#   BENCH_PORT_BASE  if set, every stack port is moved: mysql BASE+3306, redis BASE+6379,
#                    logic BASE+7000/BASE+8080, gates BASE+8000 (+10 each), BASE+7100, BASE+9100
#   BENCH_STOP=1     stop the stack at the end (default: only when this script started it)
#   BENCH_ONLY       space-separated subset of: idle login p2p-rate p2p-max offline group-latency
#                    group hostile
#                    (a subset replaces only its own rows; the other results are kept)
#   group-latency    the group at GLAT_RATE msgs/s (default 1: 10,000 deliveries/s, within what
#                    the box writes): time from send to the last member's delivery, before the
#                    group run offers 20x that and measures the sustained fan-out rate
#   hostile          p2p at CALM_RATE alone (p2p-calm), then again while HOSTILE_N connections
#                    that never log in (slowloris, silent, garbage, wrong token) hold the same
#                    gates from HOSTILE_SRC (p2p-hostile): the legit latency with and without them
#   BENCH_SCALE      small|default (small: a quick smoke of the whole pipeline)
#   Sizes: IDLE_USERS IDLE_PROCS IDLE_SRC LOGIN_USERS P2P_USERS P2P_RATE P2P_DUR OFF_USERS
#          OFF_MSGS GROUP_MEMBERS GROUP_DUR GROUP_RATE GLAT_RATE GLAT_DUR CALM_USERS CALM_RATE CALM_DUR HOSTILE_N
#          HOSTILE_SRC
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
BIN=${BIN:-build}
case $BIN in /*) ;; *) BIN=$REPO/$BIN ;; esac
export BIN
BENCH=$BIN/cim-bench
OUT=$REPO/bench
LOGDIR=$OUT/logs
mkdir -p "$LOGDIR"

export STACK_DIR=${BENCH_STACK_DIR:-$REPO/run}
export STACK_GATES=${BENCH_GATES:-6}
export STACK_HOWTO=0
# MariaDB sized for the bench's data (several GB of rows after a few runs) on this 24 GiB box
export STACK_MYSQL_POOL=${STACK_MYSQL_POOL:-4G} STACK_MYSQL_REDO=${STACK_MYSQL_REDO:-1G}
if [[ -n ${BENCH_PORT_BASE:-} ]]; then
    B=$BENCH_PORT_BASE
    export STACK_MYSQL_PORT=$((B + 3306)) STACK_REDIS_PORT=$((B + 6379))
    export STACK_LOGIC_NN=$((B + 7000)) STACK_LOGIC_HTTP=$((B + 8080))
    export STACK_GATE_PORT=$((B + 8000)) STACK_GATE_WS=$((B + 8001))
    export STACK_GATE_NN=$((B + 7100)) STACK_GATE_METRICS=$((B + 9100))
fi
# warnings only: the default info level logs every login
export STACK_LOG_LEVEL=${STACK_LOG_LEVEL:-warn}
# DESIGN.md: make bench runs with the per-connection, per-address and API limits raised
export CIM_GATE_RATE=${CIM_GATE_RATE:-0} CIM_GATE_IP_CONN_RATE=${CIM_GATE_IP_CONN_RATE:-0}
export CIM_API_RATE=${CIM_API_RATE:-0} CIM_LOGIN_FAIL_MAX_IP=${CIM_LOGIN_FAIL_MAX_IP:-1000000}

SCALE=${BENCH_SCALE:-default}
if [[ $SCALE == small ]]; then
    d_idle=2000 d_login=2000 d_p2pu=200 d_rate=2000 d_dur=5 d_offu=100 d_offm=5000 d_gm=500
    d_gdur=5 d_grate=20 d_gldur=5 d_hn=1000 d_cdur=5
else
    d_idle=100000 d_login=20000 d_p2pu=1000 d_rate=25000 d_dur=15 d_offu=200 d_offm=50000
    d_gm=10000 d_gdur=10 d_grate=20 d_gldur=30 d_hn=10000 d_cdur=20
fi
IDLE_USERS=${IDLE_USERS:-$d_idle}
IDLE_PROCS=${IDLE_PROCS:-$(((IDLE_USERS + 16999) / 17000))}
IDLE_SRC=${IDLE_SRC:-127.0.0.1-8}
LOGIN_USERS=${LOGIN_USERS:-$d_login}
P2P_USERS=${P2P_USERS:-$d_p2pu}
P2P_RATE=${P2P_RATE:-$d_rate}
P2P_DUR=${P2P_DUR:-$d_dur}
OFF_USERS=${OFF_USERS:-$d_offu}
OFF_MSGS=${OFF_MSGS:-$d_offm}
GROUP_MEMBERS=${GROUP_MEMBERS:-$d_gm}
GROUP_DUR=${GROUP_DUR:-$d_gdur}
GROUP_RATE=${GROUP_RATE:-$d_grate}
GLAT_RATE=${GLAT_RATE:-1}
GLAT_DUR=${GLAT_DUR:-$d_gldur}
CALM_USERS=${CALM_USERS:-1000}
CALM_RATE=${CALM_RATE:-1000}
CALM_DUR=${CALM_DUR:-$d_cdur}
HOSTILE_N=${HOSTILE_N:-$d_hn}
HOSTILE_SRC=${HOSTILE_SRC:-127.0.0.20-27}
ONLY=${BENCH_ONLY:-idle login p2p-rate p2p-max offline group-latency group hostile}

say() { printf 'bench: %s\n' "$*"; }

[[ -x $BENCH ]] || {
    say "$BENCH missing: make BUILD=${BIN#"$REPO"/} bins"
    exit 1
}

# ---- stack
started=0
# shellcheck source=deploy/stack-lib.sh
source "$REPO/deploy/stack-lib.sh"
stack_init || exit 1
if ! stack_pid gate1 >/dev/null || ! stack_pid "gate$STACK_GATES" >/dev/null ||
    ! stack_pid logic1 >/dev/null; then
    say "starting the stack in $STACK_DIR with $STACK_GATES gates"
    bash "$REPO/deploy/stack.sh" start || exit 1
    started=1
else
    say "reusing the running stack in $STACK_DIR"
fi
stop_stack() {
    if [[ ${BENCH_STOP:-$started} == 1 ]]; then
        say "stopping the stack"
        bash "$REPO/deploy/stack.sh" stop >/dev/null
    fi
}
trap stop_stack EXIT

GATES=""
for ((i = 1; i <= STACK_GATES; i++)); do
    GATES+="${GATES:+,}$STACK_HOST:$(stack__inst "gate$i" PORT)"
done
GATES2="$STACK_HOST:$(stack__inst gate1 PORT),$STACK_HOST:$(stack__inst gate2 PORT)"
API="http://$STACK_HOST:$(stack__inst logic1 HTTP)"
COMMON=(--api "$API" --api-key-file "$STACK_DIR/api_key" --run-dir "$STACK_DIR")

RESULTS=$LOGDIR/results.jsonl
# keep the rows of the scenarios not run this time
if [[ -f $RESULTS ]]; then
    python3 - "$RESULTS" "$ONLY" <<'PY'
import json, sys
only = set(sys.argv[2].split())
if "hostile" in only:
    only |= {"p2p-calm", "p2p-hostile", "hostile-load"}
keep = []
for l in open(sys.argv[1]):
    try:
        if json.loads(l)["name"] not in only:
            keep.append(l)
    except (ValueError, KeyError):
        pass
open(sys.argv[1], "w").write("".join(keep))
PY
    [[ -f $LOGDIR/commands.txt ]] && cp "$LOGDIR/commands.txt" "$LOGDIR/commands.prev"
fi
declare -A CMDS

run() { # NAME ARGS...: run cim-bench, keep its log and RESULT line
    local name=$1
    shift
    CMDS[$name]="build/$(basename "$BIN")/cim-bench $*"
    local cmd=("$BENCH" "$@")
    [[ $name == hostile-load ]] || cmd+=("${COMMON[@]}")
    say "$name: ${CMDS[$name]}"
    "${cmd[@]}" 2>&1 | tee "$LOGDIR/$name.log" | grep -E '^(\[|provisioned|group|RESULT)' |
        awk -v n="$name" '/^RESULT/{print "bench: " n " done"; next} {print "  " $0}' |
        tail -n 400
    local line
    line=$(grep '^RESULT ' "$LOGDIR/$name.log" | tail -1)
    if [[ -n $line ]]; then
        printf '{"name":"%s","result":%s}\n' "$name" "${line#RESULT }" >>"$RESULTS"
    else
        say "$name: no RESULT line (see $LOGDIR/$name.log)"
    fi
    sleep 2
}

want() { [[ " $ONLY " == *" $1 "* ]]; }

# outbox rows whose recipients' inbox rows are not all written yet (fanout = 0), waiting up to
# $1 s for the fan-out to catch up; sets PENDING (-1: could not ask MariaDB)
wait_fanout() {
    PENDING=-1
    for _ in $(seq "$1"); do
        PENDING=0
        for s in 0 1 2 3; do
            n=$(mariadb --no-defaults -S "$STACK_MYSQL_SOCK" -uroot -N \
                -e "SELECT COUNT(*) FROM im_$s.im_message_send WHERE fanout = 0" 2>/dev/null) || n=x
            [[ $n =~ ^[0-9]+$ ]] || { PENDING=-1; break; }
            PENDING=$((PENDING + n))
        done
        ((PENDING == 0)) && break
        sleep 1
    done
}

# uid ranges: one per scenario so runs are idempotent and scenarios do not kick each other
want idle && run idle --scenario idle --gates "$GATES" --users "$IDLE_USERS" --duration 5 \
    --procs "$IDLE_PROCS" --src-ips "$IDLE_SRC" --conc 1000 --uid-base 710000000
want login && run login --scenario login --gates "$GATES2" --users "$LOGIN_USERS" \
    --procs 2 --src-ips "$IDLE_SRC" --conc 2000 --uid-base 720000000
want p2p-rate && run p2p-rate --scenario p2p --gates "$GATES2" --users "$P2P_USERS" \
    --duration "$P2P_DUR" --rate "$P2P_RATE" --procs 1 --uid-base 730000000 --drain 30
want p2p-max && run p2p-max --scenario p2p --gates "$GATES2" --users "$P2P_USERS" \
    --duration "$P2P_DUR" --rate 0 --inflight 2 --procs 1 --uid-base 730000000 --drain 30
want offline && run offline --scenario offline --gates "$GATES2" --users "$OFF_USERS" \
    --msgs "$OFF_MSGS" --inflight 16 --duration 60 --procs 1 --uid-base 740000000
if want group-latency; then
    wait_fanout 120 # a latency run: not while an earlier run's backlog is still being written
    say "before group-latency: outbox rows with fan-out still pending: $PENDING"
    run group-latency --scenario group --gates "$GATES" --members "$GROUP_MEMBERS" \
        --duration "$GLAT_DUR" --rate "$GLAT_RATE" --procs 1 --uid-base 750000000 --drain 10
fi
want group && run group --scenario group --gates "$GATES" --members "$GROUP_MEMBERS" \
    --duration "$GROUP_DUR" --rate "$GROUP_RATE" --procs 1 --uid-base 750000000 --drain 10
if want hostile; then
    # latency runs: not while the group overload's backlog is still being written
    wait_fanout 120
    say "before p2p-calm: outbox rows with fan-out still pending: $PENDING"
    CALM=(--scenario p2p --gates "$GATES2" --users "$CALM_USERS" --duration "$CALM_DUR"
        --rate "$CALM_RATE" --procs 1 --uid-base 760000000 --drain 10)
    run p2p-calm "${CALM[@]}"
    # the hostile connections: opened, held for the whole p2p run (login + load + drain)
    rm -f "$LOGDIR/hostile-load.log"
    HARGS=(--scenario hostile --gates "$GATES2" --users "$HOSTILE_N" --duration $((CALM_DUR + 40))
        --procs 1 --src-ips "$HOSTILE_SRC" --conc 1000 --run-dir "$STACK_DIR")
    CMDS[hostile-load]="build/$(basename "$BIN")/cim-bench ${HARGS[*]}"
    run hostile-load "${HARGS[@]}" >/dev/null &
    hpid=$!
    for _ in $(seq 60); do # until they are open
        grep -q 'hold' "$LOGDIR/hostile-load.log" 2>/dev/null && break
        sleep 1
    done
    run p2p-hostile "${CALM[@]}"
    wait "$hpid"
fi

# ---- RESULTS.md
# the exact commands, for RESULTS.md
: >"$LOGDIR/commands.txt"
for k in idle login p2p-rate p2p-max offline group-latency group p2p-calm hostile-load p2p-hostile; do
    if [[ -z ${CMDS[$k]:-} ]]; then # not run this time: the previous command line, if any
        grep -P "^$k\t" "$LOGDIR/commands.prev" 2>/dev/null >>"$LOGDIR/commands.txt"
        continue
    fi
    if [[ $k == hostile-load ]]; then
        printf '%s\t%s\n' "$k" "${CMDS[$k]}" >>"$LOGDIR/commands.txt"
    else
        printf '%s\t%s %s\n' "$k" "${CMDS[$k]}" \
            "--api $API --api-key-file $STACK_DIR/api_key --run-dir $STACK_DIR" >>"$LOGDIR/commands.txt"
    fi
done
rm -f "$LOGDIR/commands.prev"

# nothing acked may be left half-written, after the fan-out has had a minute to catch up
wait_fanout 60
pending=$PENDING
say "outbox rows with fan-out still pending: $pending"

python3 - "$RESULTS" "$OUT/RESULTS.md" "$STACK_GATES" "$pending" <<'PY' || say "RESULTS.md: python3 failed"
import json, sys, os, subprocess, datetime
res = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        o = json.loads(line)
        res[o["name"]] = o["result"]
gates = sys.argv[3]
cmds = {}
try:
    for l in open(os.path.join(os.path.dirname(sys.argv[1]), "commands.txt")):
        k, v = l.rstrip("\n").split("\t", 1)
        cmds[k] = v
except OSError:
    pass
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return "?"
def ms(h, k):
    return "%.2f" % h.get(k, 0) if h and h.get("n") else "-"
rows = []
def row(test, figure, target, ok):
    rows.append("| %s | %s | %s | %s |" % (test, figure, target, {True: "met", False: "not met", None: "-"}[ok]))
r = res.get("idle")
if r:
    kib = r.get("bytes_per_conn", 0) / 1024
    row("idle", "%d/%d connections on %d gates, gate RSS %.0f -> %.0f MiB = %.2f KiB/conn, %.0f logins/s"
        % (r["conns_ok"], r["users"], r["gates"], r["gate_rss_before_kb"] / 1024, r["gate_rss_after_kb"] / 1024,
           kib, r.get("logins_per_sec", 0)),
        "100,000 conns on 5+ gates, <= 1 KiB/conn", r["conns_ok"] >= 100000 and r["gates"] >= 5 and kib <= 1)
r = res.get("login")
if r:
    row("login", "%d/%d token logins on %d gates, %.0f logins/s, login p50/p99 %s/%s ms"
        % (r["conns_ok"], r["users"], r["gates"], r.get("logins_per_sec", 0), ms(r["login_ms"], "p50"),
           ms(r["login_ms"], "p99")),
        ">= 20,000 logins/s", r.get("logins_per_sec", 0) >= 20000)
for name, target in (("p2p-rate", "p99 send->deliver <= 20 ms at 25,000 msgs/s"),
                     ("p2p-max", ">= 50,000 msgs/s acked and delivered")):
    r = res.get(name)
    if not r:
        continue
    fig = ("rate %s: sent %d acked %d (%.0f/s) delivered %d (%.0f/s) lost %d dup %d; ack p50/p99 %s/%s ms, "
           "deliver p50/p99 %s/%s ms; gate+logic CPU %.0f%%, db+redis %.0f%%"
           % (r["rate"] or "closed loop x%d" % r["inflight"], r["sent"], r["acked"], r["acked_per_sec"],
              r["delivered"], r["delivered_per_sec"], r["lost"], r["dup"], ms(r["ack_ms"], "p50"),
              ms(r["ack_ms"], "p99"), ms(r["deliver_ms"], "p50"), ms(r["deliver_ms"], "p99"),
              r["srv_cpu_pct"], r["db_cpu_pct"]))
    if name == "p2p-rate":
        ok = r["rate"] >= 25000 and r["acked_per_sec"] >= 0.95 * 25000 and r["deliver_ms"]["p99"] <= 20 and r["lost"] == 0
    else:
        ok = r["acked_per_sec"] >= 50000 and r["delivered_per_sec"] >= 50000 and r["lost"] == 0
    row(name, fig, target, ok)
r = res.get("offline")
if r:
    row("offline", "%d msgs to %d offline users: stored %.0f/s (%d acked), sync %d entries %.0f msgs/s (%d pages), lost %d dup %d"
        % (r["msgs"], r["users"] // 2, r["stored_per_sec"], r["acked"], r["delivered"], r["sync_per_sec"],
           r["sync_pages"], r["lost"], r["dup"]),
        ">= 50,000 stored/s, sync >= 100,000 msgs/s", r["stored_per_sec"] >= 50000 and r["sync_per_sec"] >= 100000)
def group_ok(name, r, t):  # the target a group run answers, and whether it is met
    if name == "group-latency":
        return ("10,000 members: last delivery <= 1 s p99",
                r["members"] >= 10000 and r["group_msgs"] > 0 and t.get("p99", 1e9) <= 1000
                and r["incomplete"] == 0 and r["lost"] == 0)
    return ("10,000 members: >= 200,000 member deliveries/s sustained",
            r["members"] >= 10000 and r["member_deliveries_per_sec"] >= 200000)
for name, test in (("group-latency", "group latency"), ("group", "group")):
    r = res.get(name)
    if not r:
        continue
    t = r.get("time_to_last_ms", {})
    target, ok = group_ok(name, r, t)
    row(test, "%d members online (%d conns), %d msgs at %s/s: time-to-last p50/p99 %s/%s ms (incomplete %d), "
        "%.0f member deliveries/s, lost %d dup %d"
        % (r["members"], r["conns_ok"], r["group_msgs"], r["rate"], ms(t, "p50"), ms(t, "p99"), r["incomplete"],
           r["member_deliveries_per_sec"], r["lost"], r["dup"]), target, ok)
c, h, hl = res.get("p2p-calm"), res.get("p2p-hostile"), res.get("hostile-load")
if c and h:
    def lat(r):
        return "deliver p50/p99 %s/%s ms, ack p99 %s ms, %d/%d delivered, lost %d dup %d" % (
            ms(r["deliver_ms"], "p50"), ms(r["deliver_ms"], "p99"), ms(r["ack_ms"], "p99"),
            r["delivered"], r["acked"], r["lost"], r["dup"])
    hf = ""
    if hl:
        hf = ("; hostile: %d connections (%d open at the end, %d reopened after the gates closed them, "
              "%d bytes of slowloris/garbage)" % (hl["users"], hl.get("hostile_open_end", 0),
              hl.get("reconnects", 0), hl.get("hostile_bytes", 0)))
    row("hostile (issue 8)", "%d legit users, %s msgs/s: alone %s; with hostile connections %s%s"
        % (c["users"], c["rate"], lat(c), lat(h), hf),
        "legit traffic unharmed by garbage/slowloris connections", None)
out = []
out.append("# cim benchmark results (issue 7)\n")
out.append("Written by `make bench` (bench/run.sh) on %s. Raw RESULT lines: `bench/logs/results.jsonl`, "
           "full logs: `bench/logs/NAME.log`.\n" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"))
out.append("Machine: %s cores (`nproc`), %s memory, kernel %s, %s. Server, database, Redis and the "
           "load generator all share these cores, so every figure is a lower bound of what the "
           "server alone would do, and runs are noisy.\n"
           % (sh("nproc"), sh("free -h | awk '/Mem:/{print $2}'"), sh("uname -r"),
              sh(". /etc/os-release && echo $PRETTY_NAME")))
# what msg_logic runs with: CIM_MYSQL_POOL (passed through by the stack) overrides its config file
pool = os.environ.get("CIM_MYSQL_POOL") or sh("sed -n 's/^mysql_pool = //p' \"$STACK_DIR/logic1.conf\"") \
    or "2 (default)"
out.append("Stack: 1 msg_logic (mysql_pool %s: MySQL connections per shard), %s msg_gate, MariaDB (4 shard "
           "databases, innodb_flush_log_at_trx_commit=1), Redis; log_level warn.\n" % (pool, gates))
pend = int(sys.argv[4]) if len(sys.argv) > 4 else -1
out.append("After the runs, outbox rows whose fan-out (recipients' inbox rows) is still pending: %s "
           "(checked in MariaDB after up to 60 s). \"lost\" below counts acked messages a connected "
           "recipient had not received when the run ended (after its drain); with 0 pending here they "
           "are stored in the recipients' inboxes and come by sync at the next login.\n"
           % ("unknown" if pend < 0 else pend))
out.append("| test | measured | target | |")
out.append("|---|---|---|---|")
out += rows
out.append("\n## Commands\n")
out.append("```")
for k, v in cmds.items():
    out.append(v)
out.append("```\n")
out.append("## Per-process figures\n")
out.append("| test | process | pid | RSS before (KiB) | RSS after (KiB) | CPU % |")
out.append("|---|---|---|---|---|---|")
for name, r in res.items():
    for s in r.get("servers", []):
        out.append("| %s | %s | %d | %d | %d | %.1f |" % (name, s["name"], s["pid"], s["rss_before_kb"], s["rss_kb"], s["cpu_pct"]))
# hand-written analysis below the marker survives re-runs
marker = "<!-- analysis: kept by bench/run.sh -->"
try:
    old = open(sys.argv[2]).read()
    if marker in old:
        out.append("\n" + marker + old.split(marker, 1)[1].rstrip("\n"))
except OSError:
    pass
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY


if command -v gnuplot >/dev/null && [[ -x $OUT/plot.sh ]]; then
    bash "$OUT/plot.sh" "$RESULTS" "$OUT" || say "plot failed"
else
    say "gnuplot not found: no PNGs (apt-get install gnuplot-nox)"
fi
say "results: bench/RESULTS.md"
