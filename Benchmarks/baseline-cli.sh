#!/bin/bash
# The baseline rnm is compared with: what CLI-driven tools do. Follows `ip monitor address` and spawns one
# `nft add/delete element` per event. Usage (in a namespace): baseline-cli.sh IFNAME TABLE SET
set -u
IFNAME=$1 TABLE=$2 SET=$3
ip -o -4 monitor address | while read -r first second third fourth rest; do
    # "3: wan0    inet 198.18.0.1/32 scope global wan0" or "Deleted 3: wan0    inet ..."
    if [ "$first" = "Deleted" ]; then dev=$third; addr=${rest%%/*}; addr=${addr#inet }; op=delete
    else dev=$second; addr=${fourth%%/*}; op=add; fi
    [ "$dev" = "$IFNAME" ] || continue
    nft "$op" element inet "$TABLE" "$SET" "{ $addr }" 2>/dev/null
done
