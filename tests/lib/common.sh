# shellcheck shell=bash
# Helpers for tests/run.sh (and any other test script): free ports, result counting,
# valgrind / sanitizer log checks.

# free_ports N: N distinct TCP ports, free on 127.0.0.1 and 0.0.0.0 right now, picked at random
# in 20000-32000 (below the kernel's ephemeral range, away from the make-run ports).
free_ports() {
    python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
got = []
for _ in range(20000):
    if len(got) == n:
        break
    p = random.randint(20000, 32000)
    if p in got:
        continue
    ok = True
    for addr in ("127.0.0.1", "0.0.0.0"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((addr, p))
        except OSError:
            ok = False
        finally:
            s.close()
        if not ok:
            break
    if ok:
        got.append(p)
if len(got) != n:
    sys.exit("free_ports: found only %d of %d" % (len(got), n))
print(" ".join(map(str, got)))
EOF
}

# summary_of FILE: prints "P F" from the last "N passed, N failed" line, or nothing
summary_of() {
    grep -aE '^[0-9]+ passed, [0-9]+ failed$' "$1" 2>/dev/null | tail -n 1 |
        awk '{print $1, $3}'
}

# vg_bad_logs FILE...: prints the valgrind logs that report errors or definite leaks
vg_bad_logs() {
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        if grep -qE 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]' "$f"; then
            echo "$f"
        fi
    done
}

# san_bad_logs FILE...: prints the logs that hold a sanitizer report
san_bad_logs() {
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        if grep -qaE 'ERROR: (Address|Leak|Thread|Memory|UndefinedBehavior)Sanitizer|: runtime error: ' "$f"; then
            echo "$f"
        fi
    done
}

# san_excerpt FILE: the sanitizer report(s) in a server log, at most 80 lines
san_excerpt() {
    grep -aE -A 40 'ERROR: (Address|Leak|Thread|Memory|UndefinedBehavior)Sanitizer|: runtime error: ' \
        "$1" | head -n 80
}
