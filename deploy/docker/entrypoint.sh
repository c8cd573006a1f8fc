#!/bin/sh
# cim container entrypoint: msg_gate or msg_logic with this container's own address advertised.
#   cim-entrypoint gate  [--name value ...]
#   cim-entrypoint logic [--name value ...]
# Every instance of a scaled service runs the same command; what differs per container is
# only its IP, which it finds here and puts into the nanomsg endpoint it registers in Redis
# (gates and logics find each other there; nanomsg needs literal IPs).
#
# Environment (besides the processes' own CIM_<NAME> settings, which they read themselves):
#   CIM_ADVERTISE_IP   address to advertise (default: first address of `hostname -i`)
#   CIM_GATE_NN_PORT   gate's nanomsg port (7100)      CIM_LOGIC_NN_PORT  logic's (7000)
#   CIM_REDIS_HOST     when CIM_REDIS_ADDR is not set: Redis host name, resolved here to a
#                      literal IP (hiredis would resolve names blocking), port CIM_REDIS_PORT
#                      (6379)
set -eu

role=${1:-}
[ $# -gt 0 ] && shift

ip=${CIM_ADVERTISE_IP:-}
if [ -z "$ip" ]; then
    for a in $(hostname -i 2>/dev/null); do
        case $a in
            127.* | ::1 | *:*) ;;          # loopback, IPv6: not for nanomsg's tcp://IP:PORT
            *) ip=$a; break ;;
        esac
    done
fi
if [ -z "$ip" ]; then
    echo "cim-entrypoint: cannot find this container's IPv4 address (set CIM_ADVERTISE_IP)" >&2
    exit 1
fi

if [ -z "${CIM_REDIS_ADDR:-}" ] && [ -n "${CIM_REDIS_HOST:-}" ]; then
    rip=""
    for _ in $(seq 1 60); do
        rip=$(getent ahostsv4 "$CIM_REDIS_HOST" 2>/dev/null | awk 'NR == 1 { print $1 }')
        [ -n "$rip" ] && break
        sleep 1
    done
    if [ -z "$rip" ]; then
        echo "cim-entrypoint: cannot resolve $CIM_REDIS_HOST" >&2
        exit 1
    fi
    CIM_REDIS_ADDR="$rip:${CIM_REDIS_PORT:-6379}"
    export CIM_REDIS_ADDR
fi

case $role in
    gate)
        echo "cim-entrypoint: msg_gate advertising tcp://$ip:${CIM_GATE_NN_PORT:-7100}" >&2
        exec /usr/local/bin/msg_gate --gate_nn_addr "tcp://$ip:${CIM_GATE_NN_PORT:-7100}" "$@"
        ;;
    logic)
        echo "cim-entrypoint: msg_logic advertising tcp://$ip:${CIM_LOGIC_NN_PORT:-7000}" >&2
        exec /usr/local/bin/msg_logic --logic_nn_addr "tcp://$ip:${CIM_LOGIC_NN_PORT:-7000}" "$@"
        ;;
    cim | console)
        exec /usr/local/bin/cim "$@"
        ;;
    *)
        echo "usage: cim-entrypoint gate|logic|cim [--name value ...]" >&2
        exit 2
        ;;
esac
