#!/usr/bin/env bash
# bench/plot.sh [results.jsonl] [outdir]: PNGs from the RESULT lines bench/run.sh collected.
#   latency.png     p50/p90/p99 (ms) of send->ack, send->deliver, group time-to-last, login
#   throughput.png  acked/s, delivered/s, stored/s, sync/s, logins/s, member deliveries/s
# Needs gnuplot (apt-get install gnuplot-nox) and python3.
set -uo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IN=${1:-$DIR/logs/results.jsonl}
OUT=${2:-$DIR}
command -v gnuplot >/dev/null || {
    echo "plot: gnuplot not found" >&2
    exit 1
}
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT

python3 - "$IN" "$TMP" <<'PY' || exit 1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
lat = open(sys.argv[2] + "/lat.dat", "w")
thr = open(sys.argv[2] + "/thr.dat", "w")
for o in rows:
    n, r = o["name"], o["result"]
    for key, label in (("ack_ms", "ack"), ("deliver_ms", "deliver"), ("time_to_last_ms", "last"),
                       ("login_ms", "login")):
        h = r.get(key)
        if h and h.get("n"):
            lat.write('"%s %s" %f %f %f\n' % (n, label, h["p50"], h["p90"], h["p99"]))
    for key, label in (("acked_per_sec", "acked"), ("delivered_per_sec", "delivered"),
                       ("stored_per_sec", "stored"), ("sync_per_sec", "synced"),
                       ("logins_per_sec", "logins"), ("member_deliveries_per_sec", "member deliv")):
        v = r.get(key)
        if v and not (key == "delivered_per_sec" and r["scenario"] in ("group", "offline")):
            thr.write('"%s %s" %f\n' % (n, label, v))
PY

gnuplot <<EOF
set terminal pngcairo size 1100,600 noenhanced
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30 left
set grid ytics
set logscale y
set key top left

set output "$OUT/latency.png"
set title "cim-bench latency percentiles (ms, log scale)"
set ylabel "ms"
plot "$TMP/lat.dat" using 2:xtic(1) title "p50", '' using 3 title "p90", '' using 4 title "p99"

set output "$OUT/throughput.png"
set title "cim-bench throughput (per second, log scale)"
set ylabel "per second"
plot "$TMP/thr.dat" using 2:xtic(1) title "measured"
EOF
echo "plot: $OUT/latency.png $OUT/throughput.png"
