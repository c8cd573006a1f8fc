#!/bin/sh
# Create the secrets deploy/docker-compose.yml mounts (docker secrets from files), once:
# random values, never overwritten. Files are 0644 inside a 0700 directory: the containers
# run as non-root users (cim 10001, grafana 472) and must read their bind-mounted copy, while
# other users of the host cannot reach the directory.
#   sh deploy/docker/make-secrets.sh [DIR]      (default: deploy/docker/secrets)
set -eu
dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
chmod 0700 "$dir"
[ -e "$dir/.gitignore" ] || printf '*\n' >"$dir/.gitignore"
gen() { # NAME BYTES
    if [ -s "$dir/$1" ]; then
        echo "secrets: $dir/$1 exists, kept"
        return
    fi
    od -An -tx1 -N"$2" /dev/urandom | tr -d ' \n' >"$dir/$1.tmp"
    chmod 0644 "$dir/$1.tmp"
    mv "$dir/$1.tmp" "$dir/$1"
    echo "secrets: wrote $dir/$1"
}
gen api_key 16               # business API Bearer key (msg_logic api_key_file)
gen token_secret 32          # HMAC key for login tokens, the same on every logic
gen mysql_password 16        # MySQL user cim (msg_logic mysql_password_file)
gen mysql_root_password 16   # MySQL root (healthchecks, backups)
gen grafana_admin 12         # Grafana user admin
