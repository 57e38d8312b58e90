#!/bin/bash
# rnm demo: runs rnmd with the shipped default config inside a throwaway network namespace, changes
# addresses the way a DHCP client and an admin would, and shows the nft sets following. Never touches the
# host's own network; the namespace (and everything in it) is deleted on exit, even on Ctrl-C.
set -euo pipefail
RNMD=${1:-.build/debug/rnmd}
RNMCTL=${2:-$(dirname "$RNMD")/rnmctl}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "the demo needs root (network namespaces, nftables): sudo make demo" >&2; exit 1; }
[ -x "$RNMD" ] || { echo "$RNMD is not built" >&2; exit 1; }

NS="rnm-demo-$$"
WORK=$(mktemp -d /tmp/rnm-demo.XXXXXX)
# The shipped default config, with the control socket and state kept in the demo's own directory.
CONFIG="$WORK/config.yaml"
sed -e "s|socket: /run/rnm/rnmd.sock|socket: $WORK/run/rnmd.sock|" -e "s|state_dir: /var/lib/rnm|state_dir: $WORK/state|" \
    "$ROOT/pkg-files/config/default.yaml" >"$CONFIG"
cp -r "$ROOT/pkg-files/config/rules.d" "$WORK/"
export RNM_SOCKET="$WORK/run/rnmd.sock"
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_ns() { ip netns exec "$NS" "$@"; }
LOGSEEN=0
show_sets() {
    # The daemon's transactions since the last step, then one line per set.
    local n
    n=$(wc -l <"$WORK/rnmd.log")
    if [ "$n" -gt "$LOGSEEN" ]; then
        tail -n +"$((LOGSEEN + 1))" "$WORK/rnmd.log" | grep -v -e "service" -e "^$" | sed 's/^<[0-9]>/   rnmd: /' || true
    else
        echo "   rnmd: (no transaction)"
    fi
    LOGSEEN=$n
    in_ns nft -j list table inet rnm | python3 -c '
import json, sys
def show(e):
    extra = ""
    if isinstance(e, dict) and "elem" in e:
        extra = " (expires in %ss)" % e["elem"]["expires"] if "expires" in e["elem"] else ""
        e = e["elem"]["val"]
    if isinstance(e, dict) and "prefix" in e:
        e = "%s/%s" % (e["prefix"]["addr"], e["prefix"]["len"])
    elif isinstance(e, dict) and "range" in e:
        e = "%s-%s" % tuple(e["range"])
    return str(e) + extra
for o in json.load(sys.stdin)["nftables"]:
    s = o.get("set")
    if s:
        print("   %-12s { %s }" % (s["name"], ", ".join(show(e) for e in s.get("elem", []))))
'
}
settle() { sleep 0.3; }

bold "a throwaway namespace ($NS) with eth0 (zone wan) and eth1 (zone lan), as in $CONFIG"
ip netns add "$NS"
in_ns ip link set lo up
in_ns ip link add eth0 type veth peer name isp0
in_ns ip link add eth1 type veth peer name host0
for i in eth0 isp0 eth1 host0; do in_ns ip link set "$i" up; done
in_ns ip addr add 192.168.1.1/24 dev eth1

bold "rnmd --check --config pkg-files/config/default.yaml (socket and state moved into $WORK)"
"$RNMD" --check --config "$CONFIG"

bold "start rnmd in the namespace"
ip netns exec "$NS" "$RNMD" --config "$CONFIG" --log-level debug >"$WORK/rnmd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q converged "$WORK/rnmd.log" && break; sleep 0.05; done
show_sets

bold "the DHCP client on eth0 gets 203.0.113.10/24 and 2001:db8:1::10/64"
in_ns ip addr add 203.0.113.10/24 dev eth0
in_ns ip addr add 2001:db8:1::10/64 dev eth0 nodad
settle; show_sets

bold "a renew with the same address: no nftables transaction at all"
in_ns ip addr replace 203.0.113.10/24 dev eth0 valid_lft 3600 preferred_lft 3600
settle; show_sets

bold "the lease changes to 203.0.113.77 (delete + add, as dhclient-script does): the set follows"
printf 'addr del 203.0.113.10/24 dev eth0\naddr add 203.0.113.77/24 dev eth0\n' | in_ns ip -batch -
settle; show_sets

bold "a tentative IPv6 address (DAD running) is not published until DAD completes"
in_ns ip addr add 2001:db8:1::20/64 dev eth0
settle; show_sets
echo "   (waiting for DAD)"; sleep 2.2; show_sets

bold "eth0 goes down and up: IPv4 stays, the kernel flushes IPv6, the sets follow"
in_ns ip link set eth0 down
in_ns ip link set eth0 up
settle; show_sets

bold "rnmctl status"
"$RNMCTL" status | sed 's/^/   /'

bold "rnmctl set add blocklist_v4 192.0.2.0/24 198.51.100.7 timeout 1h: the kernel will expire them"
"$RNMCTL" set add blocklist_v4 192.0.2.0/24 198.51.100.7 timeout 1h | sed 's/^/   /'
"$RNMCTL" set show blocklist_v4 | sed 's/^/   /'
settle; show_sets

bold "someone runs 'nft flush ruleset' (what 'systemctl reload nftables' does): rnmd puts the table back"
in_ns nft flush ruleset
settle; show_sets

bold "a template edit (open HTTPS on wan): 'rnmctl plan' shows what a reload would change, 'rnmctl reload' swaps it in"
sed -i 's/iifname $wan_ifaces tcp dport $ssh_port accept/iifname $wan_ifaces tcp dport { $ssh_port, 443 } accept/' "$WORK/rules.d/router.nft"
"$RNMCTL" plan | sed 's/^/   /'
"$RNMCTL" reload | sed 's/^/   /'
"$RNMCTL" plan | sed 's/^/   /'

bold "SIGTERM: rnmd exits, the table stays as last committed (fail-static)"
kill -TERM "$PID"; wait "$PID" || true; PID=""
show_sets

bold "cleaning up: deleting $NS"
