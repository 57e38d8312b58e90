#!/usr/bin/env python3
"""Records the rtnetlink notifications a list of `ip` commands produce, in a fresh network namespace.

Run as root: unshare -n python3 record-routes.py > rtnetlink-routes.hex
Output: '# command' then one 'nlmsg_type hex' line per message (the format of rtnetlink-events.hex).
"""
import os, socket, struct, subprocess, sys, time

GROUPS = 0x1 | 0x10 | 0x40 | 0x100 | 0x400  # LINK, IPV4_IFADDR, IPV4_ROUTE, IPV6_IFADDR, IPV6_ROUTE

COMMANDS = [
    "ip link set lo up",
    "ip link set lo mtu 9000",
    "rtnl addr add 192.0.2.1/24 dev lo proto 114",
    "ip addr add 192.0.2.2/24 dev lo",
    "rtnl addr add 2001:db8::1/64 dev lo proto 114",
    "ip route add 10.20.0.0/16 dev lo proto 114",
    "ip route add 10.30.0.0/16 via 192.0.2.254 proto 114 metric 50 table 100",
    "ip route add default via 192.0.2.254 proto 114 table 1000",
    "ip -6 route add 2001:db8:1::/48 dev lo proto 114",
    "ip link add veth0 type veth peer name veth1",
    "ip link set veth0 up",
    "ip link set veth1 up",
    "ip -6 addr add 2001:db8:5::1/64 dev veth0 nodad",
    "ip -6 route add default via 2001:db8:5::fe dev veth0 proto 114 metric 7 table 100",
    "ip route add 10.70.0.0/16 dev lo proto 114 table 100 metric 1024",
    "ip route add 10.40.0.0/16 dev lo proto static",
    "ip route add blackhole 10.60.0.0/16 proto 114",
    "ip route replace 10.20.0.0/16 via 192.0.2.253 proto 114",
    "ip route del 10.20.0.0/16 proto 114",
    "ip -6 route del 2001:db8:1::/48 proto 114",
    "ip route del default table 1000",
    "ip -6 route del default table 100 proto 114 metric 7",
    "ip route add 10.80.0.0/16 dev veth0 proto 114",
    "ip -6 route add 2001:db8:6::/48 dev veth0 proto 114",
    "ip link set veth0 down",
    "ip route add 10.80.0.0/16 dev veth1 proto 114",
    "ip link del veth0",
]

def rtnl_addr_add(spec):
    """iproute2 6.1 cannot set IFA_PROTO: 'rtnl addr add ADDR/LEN dev lo proto N' sends RTM_NEWADDR itself."""
    w = spec.split()
    addr, plen = w[3].split("/")
    proto = int(w[7])
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    raw = socket.inet_pton(fam, addr)
    def attr(t, payload):
        a = struct.pack("=HH", 4 + len(payload), t) + payload
        return a + b"\0" * ((4 - len(a) % 4) % 4)
    attrs = attr(1, raw) + (attr(2, raw) if fam == socket.AF_INET else b"") + attr(11, bytes([proto]))
    body = struct.pack("=BBBBI", fam, int(plen), 0, 0, socket.if_nametoindex(w[5])) + attrs
    msg = struct.pack("=IHHII", 16 + len(body), 20, 0x1 | 0x4 | 0x400 | 0x200, 1, 0) + body  # NEWADDR, REQUEST|ACK|CREATE|EXCL
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    s.sendto(msg, (0, 0))
    ack = s.recv(65536)
    err = struct.unpack_from("=i", ack, 16)[0]
    s.close()
    if err != 0:
        raise SystemExit(f"{spec}: {os.strerror(-err)}")

def main():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    s.bind((0, GROUPS))
    kernel = os.uname().release
    print(f"# rtnetlink notifications recorded from a Linux {kernel} kernel in a fresh network namespace")
    print("# (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)"
          " by record-routes.py. Format: '# command' then one 'nlmsg_type hex' per message.")
    for cmd in COMMANDS:
        if cmd.startswith("rtnl "):
            rtnl_addr_add(cmd)
        else:
            subprocess.run(cmd.split(), check=True)
        time.sleep(0.05)
        print(f"# {cmd}")
        while True:
            try:
                data = s.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            off = 0
            while off + 16 <= len(data):
                length, mtype = struct.unpack_from("=IH", data, off)
                if length < 16 or off + length > len(data):
                    break
                print(mtype, data[off:off + length].hex())
                off += (length + 3) & ~3
    sys.stdout.flush()

main()
