#!/usr/bin/env bash
# Web hook of tests/run.sh (mode all): the web page (web/) in Debian's chromium through
# playwright-core, and WebSocket tests in node (bad input; wss on a private TLS gate), against
# the running e2e stack.
#   env: CIM_GATE1 CIM_GATE2 CIM_GATE1_WS CIM_GATE2_WS CIM_API CIM_API_KEY CIM_BIN CIM_TEST_DIR
#   (tests/run.sh sets them; by hand: export them for a stack of your own)
# Installs what it needs, idempotently: the chromium package (apt) and playwright-core (npm, from
# tests/web/package-lock.json). Never downloads a browser build. Prints "N passed, N failed" last.
# Screenshots: tests/out/web/; WEB_SCREENSHOTS_TO_DOCS=1 also refreshes web/screenshots/.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CHROMIUM=${CIM_CHROMIUM:-/usr/bin/chromium}
PASSED=0
FAILED=0

say() { printf 'web: %s\n' "$*"; }
fail_setup() {
    say "SETUP FAILED: $*"
    echo "0 passed, 1 failed"
    exit 1
}

for v in CIM_GATE1 CIM_GATE2 CIM_GATE1_WS CIM_GATE2_WS CIM_API CIM_API_KEY CIM_BIN CIM_TEST_DIR; do
    [[ -n ${!v:-} ]] || fail_setup "$v is not set (run through tests/run.sh all)"
done
command -v node >/dev/null || fail_setup "node is not installed"
command -v npm >/dev/null || fail_setup "npm is not installed"

# WEB_ONLY=ws: only the WebSocket tests, bad input and wss (no browser; make test-valgrind runs
# them so the gate's WebSocket side runs under valgrind too)
if [[ ${WEB_ONLY:-} == ws ]]; then
    run() { # NAME SCRIPT
        local name=$1 script=$2 log
        log=$(mktemp)
        say "=== $name"
        (cd "$HERE" && timeout -k 10 600 node "$script") 2>&1 | tee "$log" | sed 's/^/    /'
        local line p f
        line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
        p=${line%% passed*}
        f=${line#*, }
        f=${f%% failed*}
        if [[ -z $line ]]; then p=0 f=1; fi
        PASSED=$((PASSED + p))
        FAILED=$((FAILED + f))
        rm -f "$log"
    }
    PASSED=0 FAILED=0
    run "WebSocket bad input" ws_bad_input.mjs
    run "WebSocket over TLS" wss.mjs
    echo "$PASSED passed, $FAILED failed"
    ((FAILED == 0))
    exit
fi

# --- chromium (Debian package; ~400 MB the first time) ------------------------------------------
if [[ ! -x $CHROMIUM ]]; then
    say "installing chromium (apt)"
    SUDO=""
    ((EUID != 0)) && SUDO="sudo -n"
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y chromium >/tmp/cim-web-apt.$$.log 2>&1; then
        $SUDO apt-get -o DPkg::Lock::Timeout=300 update >>/tmp/cim-web-apt.$$.log 2>&1
        if ! $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y chromium >>/tmp/cim-web-apt.$$.log 2>&1; then
            tail -20 /tmp/cim-web-apt.$$.log | sed 's/^/    /'
            fail_setup "apt-get install chromium failed (log: /tmp/cim-web-apt.$$.log)"
        fi
    fi
    rm -f /tmp/cim-web-apt.$$.log
fi
[[ -x $CHROMIUM ]] || fail_setup "$CHROMIUM is missing after the install"
say "$("$CHROMIUM" --version 2>/dev/null | head -1)"

# --- playwright-core (npm, locked; no browser download) -----------------------------------------
if ! (cd "$HERE" && node -e 'require.resolve("playwright-core")' 2>/dev/null) ||
    ! cmp -s "$HERE/package-lock.json" "$HERE/node_modules/.package-lock.json.installed" 2>/dev/null; then
    say "installing playwright-core (npm ci)"
    if ! (cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error); then
        fail_setup "npm ci in tests/web failed"
    fi
    cp "$HERE/package-lock.json" "$HERE/node_modules/.package-lock.json.installed"
fi

mkdir -p "$REPO/tests/out/web"

run() { # NAME SCRIPT: one node test program; adds its "N passed, N failed"
    local name=$1 script=$2 log rc s
    log=$(mktemp)
    say "--- $name"
    (cd "$HERE" && timeout -k 10 150 node "$script") 2>&1 | tee "$log" | sed 's/^/    /'
    rc=${PIPESTATUS[0]}
    s=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
    rm -f "$log"
    if [[ -n $s ]]; then
        PASSED=$((PASSED + ${s%% passed*}))
        s=${s#*, }
        FAILED=$((FAILED + ${s%% failed*}))
    fi
    if ((rc != 0)); then
        [[ -z $s || ${s%% failed*} == 0 ]] && FAILED=$((FAILED + 1))
        say "$name: exit status $rc"
    fi
}

run "WebSocket bad input" ws_bad_input.mjs
run "WebSocket over TLS" wss.mjs
run "web page in chromium" browser.mjs

# whatever happened, gate1 must be running for the tests after this hook
"$CIM_TEST_DIR/ctl.sh" start gate1 >/dev/null 2>&1 || true

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
