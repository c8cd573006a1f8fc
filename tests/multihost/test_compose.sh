#!/usr/bin/env bash
# Static checks of the container deployment (there is no Docker engine here):
#   - deploy/docker-compose.yml validates with docker-compose v1.29 (`config -q`), has no
#     top-level "name:", and scales (gate/logic publish port ranges, no container_name);
#   - deploy/docker/Dockerfile: Debian 12 base, `make ... bins`, non-root USER, HEALTHCHECKs;
#   - entrypoint and secret scripts parse; Prometheus config and Grafana JSON parse;
#   - every cim_* series the dashboard queries is one the processes export (source grep).
#   bash tests/multihost/test_compose.sh      (installs docker-compose with apt if missing)
# Ends with "N passed, N failed"; exit 0 only when nothing failed.
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
D=$REPO/deploy
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); printf 'ok   %s\n' "$*"; }
bad() { FAIL=$((FAIL + 1)); printf 'FAIL %s\n' "$*"; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }

if ! command -v docker-compose >/dev/null; then
    echo "test_compose: installing docker-compose (apt)"
    apt-get -o DPkg::Lock::Timeout=300 install -y docker-compose >/dev/null 2>&1 ||
        bad "docker-compose: not installed and apt-get install failed"
fi

if command -v docker-compose >/dev/null; then
    if out=$(cd "$D" && docker-compose -f docker-compose.yml config -q 2>&1); then
        ok "docker-compose config -q: deploy/docker-compose.yml is valid ($(docker-compose version --short 2>/dev/null))"
    else
        bad "docker-compose config -q: deploy/docker-compose.yml is INVALID:"
        printf '     %s\n' "$out"
    fi
    svcs=$(cd "$D" && docker-compose -f docker-compose.yml config --services 2>/dev/null | sort | tr '\n' ' ')
    check "compose: services redis mysql0..3 logic gate prometheus grafana cim ($svcs)" \
        test "$svcs" = "cim gate grafana logic mysql0 mysql1 mysql2 mysql3 prometheus redis "
fi
check "compose: no top-level name: (docker-compose 1.29 rejects it)" \
    bash -c "! grep -q '^name:' '$D/docker-compose.yml'"
check "compose: no container_name (it would block --scale)" \
    bash -c "! grep -q 'container_name' '$D/docker-compose.yml'"
check "compose: gate and logic publish port ranges (scalable)" \
    bash -c "grep -q '\"8000-8009:8000\"' '$D/docker-compose.yml' && grep -q '\"8080-8089:8080\"' '$D/docker-compose.yml'"
check "compose: each MySQL server holds one database im_N, schema from ../sql via initdb.d" \
    bash -c "for n in 0 1 2 3; do grep -q \"MYSQL_DATABASE: im_\$n\" '$D/docker-compose.yml' || exit 1; done; [[ \$(grep -c '../sql:/docker-entrypoint-initdb.d:ro' '$D/docker-compose.yml') == 4 ]]"
check "compose: secrets by file (api_key, token_secret, mysql_password)" \
    bash -c "grep -q 'CIM_API_KEY_FILE: /run/secrets/api_key' '$D/docker-compose.yml' && grep -q 'CIM_TOKEN_SECRET_FILE: /run/secrets/token_secret' '$D/docker-compose.yml' && grep -q 'CIM_MYSQL_PASSWORD_FILE: /run/secrets/mysql_password' '$D/docker-compose.yml'"

F=$D/docker/Dockerfile
check "Dockerfile: Debian 12 build and runtime stages" \
    bash -c "grep -q '^FROM debian:bookworm AS build' '$F' && grep -q '^FROM debian:bookworm-slim AS runtime' '$F'"
check "Dockerfile: builds with the Makefile (make ... bins)" grep -q 'make .*bins' "$F"
check "Dockerfile: runs as a non-root user" bash -c "grep -q '^USER cim' '$F'"
check "Dockerfile: HEALTHCHECK on /healthz for gate and logic" \
    test "$(grep -c '^HEALTHCHECK' "$F")" = 2 -a "$(grep -c 'CMD curl .*/healthz' "$F")" = 2
check "Dockerfile: runtime stage installs no -dev package" \
    bash -c "sed -n '/AS runtime/,\$p' '$F' | grep -q -- '-dev' && exit 1 || exit 0"
# every shared library the binaries link comes from a package the runtime stage installs
if [[ -x ${BIN:-$REPO/build}/msg_logic ]]; then
    B=${BIN:-$REPO/build}
    case $B in /*) ;; *) B=$REPO/$B ;; esac
    need=$(objdump -p "$B/msg_gate" "$B/msg_logic" 2>/dev/null | awk '/NEEDED/ {print $2}' | sort -u)
    miss=""
    for lib in $need; do
        case $lib in libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so*) continue ;; esac
        f=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
        pkg=$(dpkg -S "$(readlink -f "$f")" 2>/dev/null | head -1 | cut -d: -f1)
        [[ -z $pkg ]] && pkg=$(dpkg -S "$f" 2>/dev/null | head -1 | cut -d: -f1)
        sed -n '/AS runtime/,/^COPY/p' "$F" | grep -qw -- "$pkg" || miss+=" $lib($pkg)"
    done
    check "Dockerfile: runtime packages cover every library msg_gate/msg_logic link${miss:+ (missing:$miss)}" test -z "$miss"
fi
check "entrypoint: parses (sh -n)" sh -n "$D/docker/entrypoint.sh"
check "entrypoint: advertises the container IP in gate_nn_addr / logic_nn_addr" \
    bash -c "grep -q 'gate_nn_addr \"tcp://\$ip' '$D/docker/entrypoint.sh' && grep -q 'logic_nn_addr \"tcp://\$ip' '$D/docker/entrypoint.sh'"
check "make-secrets: parses (sh -n)" sh -n "$D/docker/make-secrets.sh"
# the entrypoint finds an address and passes it on (a stub stands in for the binaries)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/msg_gate#$tmp/stub#; s#/usr/local/bin/msg_logic#$tmp/stub#" "$D/docker/entrypoint.sh" >"$tmp/ep"
printf '#!/bin/sh\necho "$@"\n' >"$tmp/stub"
chmod +x "$tmp/stub" "$tmp/ep"
got=$(CIM_ADVERTISE_IP=10.9.8.7 sh "$tmp/ep" gate --log_level debug 2>/dev/null)
check "entrypoint: gate gets --gate_nn_addr tcp://10.9.8.7:7100 ($got)" \
    test "$got" = "--gate_nn_addr tcp://10.9.8.7:7100 --log_level debug"
# `hostname -i` in a container: skip loopback and IPv6, take the first IPv4 address
printf '#!/bin/sh\necho "127.0.0.11 fe80::42:acff:fe1c:8005 172.28.128.5 10.0.0.9"\n' >"$tmp/hostname"
chmod +x "$tmp/hostname"
got=$(PATH=$tmp:$PATH CIM_REDIS_HOST=localhost sh "$tmp/ep" logic 2>/dev/null)
check "entrypoint: logic advertises its first IPv4 address from hostname -i ($got)" \
    test "$got" = "--logic_nn_addr tcp://172.28.128.5:7000"

check "prometheus: config parses as YAML with dns_sd for gate:9100 and logic:8080" \
    python3 -c "
import sys, yaml
c = yaml.safe_load(open('$D/prometheus/prometheus.yml'))
j = {s['job_name']: s for s in c['scrape_configs']}
g = j['cim-gate']['dns_sd_configs'][0]; l = j['cim-logic']['dns_sd_configs'][0]
sys.exit(0 if g['names'] == ['gate'] and g['port'] == 9100 and l['names'] == ['logic'] and l['port'] == 8080 else 1)"
check "grafana: provisioning YAML parses" \
    python3 -c "
import yaml, glob
for f in glob.glob('$D/grafana/provisioning/*/*.yml'): yaml.safe_load(open(f))"
DASH=$D/grafana/dashboards/cim.json
if python3 -c "import json; json.load(open('$DASH'))" 2>/dev/null; then
    ok "grafana: dashboard JSON parses"
    miss=""
    for m in $(grep -o 'cim_[a-z_]*' "$DASH" | sed -E 's/_(bucket|sum|count)$//' | sort -u); do
        grep -rqs "\"${m}[\"{]" "$REPO"/gate/*.c "$REPO"/logic/*.c "$REPO"/common/*.c || miss+=" $m"
    done
    check "grafana: every cim_* series in the dashboard is exported by the processes${miss:+ (unknown:$miss)}" test -z "$miss"
else
    bad "grafana: dashboard JSON does not parse"
fi

printf '%d passed, %d failed\n' "$PASS" "$FAIL"
[[ $FAIL == 0 ]]
