#!/usr/bin/env bash
# Install the Debian 12 packages cim needs to build, run and test, only if some are missing.
# Idempotent; never starts services. Used by `make deps` (and so by make run / make test).
#   bash deploy/install-deps.sh        install what is missing
#   DRY_RUN=1 bash deploy/install-deps.sh   only list what is missing
set -euo pipefail

PKGS=(
    build-essential pkg-config
    libuv1-dev libprotobuf-c-dev protobuf-c-compiler libhiredis-dev
    libnanomsg-dev nanomsg-utils libmariadb-dev
    mariadb-server mariadb-client redis-server redis-tools
    libsodium-dev libssl-dev libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libwslay-dev gnuplot-nox
    valgrind curl procps iproute2 python3 clang-format cppcheck
    openssl
)

missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $st == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
    echo "deps: all ${#PKGS[@]} packages installed"
    exit 0
fi

echo "deps: missing: ${missing[*]}"
[[ ${DRY_RUN:-0} == 1 ]] && exit 1

SUDO=()
if [[ $(id -u) != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
        sudo -n true 2>/dev/null || SUDO=(sudo)
    else
        echo "deps: not root and no sudo: install them with" >&2
        echo "  apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi

# Keep maintainer scripts from starting services (no systemd here; the project starts its own
# servers). Only when no policy-rc.d exists, and removed afterwards.
POLICY=/usr/sbin/policy-rc.d
made_policy=0
cleanup() {
    if ((made_policy)); then "${SUDO[@]}" rm -f "$POLICY"; fi
}
trap cleanup EXIT
if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\n# temporary, from cim deploy/install-deps.sh\nexit 101\n' |
        "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    made_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300)
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -q \
    --no-install-recommends "${missing[@]}"
echo "deps: installed ${#missing[@]} package(s)"
