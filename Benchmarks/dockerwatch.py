#!/usr/bin/env python3
"""The two ends of the Docker benchmark, timed by one single-threaded process on one clock.

    dockerwatch.py DOCKER_SOCKET

Run inside rnmd's network namespace (under `chrt -f`). It follows the Docker engine's `/events` stream
(container start/die, network connect/disconnect) on the Unix socket, and the nftables notifications
(NFNLGRP_NFTABLES) of the namespace. Every time poll() wakes it for one of them it reads CLOCK_MONOTONIC
and CLOCK_REALTIME, and prints one JSON line per event:

    {"src": "docker", "t": MONO_NS, "rt": REALTIME_NS, "type": ..., "action": ..., "id": ..., "timeNano": ...,
     "container": ...}
    {"src": "nft", "t": MONO_NS, "rt": REALTIME_NS, "op": "add"|"del", "set": NAME, "addrs": [...]}

First line: {"ready": true}, once the engine answered the events request (events from then on are streamed).
Exits when stdin closes.
"""
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import time
import urllib.parse

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NFNLGRP_NFTABLES = 7
SO_RCVBUFFORCE = 33
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_DATA_VALUE = 1


def attrs(buf):
    """(type, payload) of the netlink attributes in buf (flags stripped)."""
    off = 0
    while off + 4 <= len(buf):
        length, typ = struct.unpack_from("=HH", buf, off)
        if length < 4:
            break
        yield typ & 0x3FFF, buf[off + 4:off + length]
        off += (length + 3) & ~3


def set_elements(payload):
    """Set name and element keys of a NEWSETELEM/DELSETELEM message (after the nfgenmsg)."""
    name, keys = None, []
    for typ, val in attrs(payload):
        if typ == NFTA_SET_ELEM_LIST_SET:
            name = val.rstrip(b"\0").decode()
        elif typ == NFTA_SET_ELEM_LIST_ELEMENTS:
            for t1, elem in attrs(val):
                if t1 != NFTA_LIST_ELEM:
                    continue
                for t2, key in attrs(elem):
                    if t2 != NFTA_SET_ELEM_KEY:
                        continue
                    for t3, data in attrs(key):
                        if t3 == NFTA_DATA_VALUE and len(data) in (4, 16):
                            keys.append(str(ipaddress.ip_address(bytes(data))))
    return name, keys


def nft_socket():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    s.bind((0, 0))
    s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
    s.setblocking(False)
    return s


class Chunked:
    """Decodes an HTTP/1.1 chunked body incrementally into lines."""

    def __init__(self):
        self.raw, self.body = b"", b""

    def feed(self, data):
        self.raw += data
        while True:
            end = self.raw.find(b"\r\n")
            if end < 0:
                break
            size = int(self.raw[:end].split(b";")[0], 16)
            if size == 0:
                raise EOFError("event stream ended")
            if len(self.raw) < end + 2 + size + 2:
                break
            self.body += self.raw[end + 2:end + 2 + size]
            self.raw = self.raw[end + 2 + size + 2:]
        lines = self.body.split(b"\n")
        self.body = lines.pop()
        return [l for l in lines if l.strip()]


def events_socket(path):
    filters = json.dumps({"type": ["container", "network"], "event": ["start", "die", "connect", "disconnect"]})
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    c.sendall(f"GET /events?filters={urllib.parse.quote(filters)} HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = c.recv(4096)
        if not b:
            raise EOFError("no answer to GET /events")
        head += b
    head, rest = head.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n")[0]
    if b" 200 " not in status + b" " or b"chunked" not in head.lower():
        raise RuntimeError(f"GET /events: {status.decode()}")
    c.setblocking(False)
    return c, rest


def main():
    nl = nft_socket()
    ev, rest = events_socket(sys.argv[1])
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    chunked = Chunked()
    pending = [rest] if rest else []
    poller = select.poll()
    for fd in (nl.fileno(), ev.fileno(), sys.stdin.fileno()):
        poller.register(fd, select.POLLIN)
    while True:
        ready = poller.poll() if not pending else [(ev.fileno(), select.POLLIN)]
        t, rt = time.monotonic_ns(), time.time_ns()
        for fd, _ in ready:
            if fd == sys.stdin.fileno():
                if not os.read(fd, 4096):
                    return
            elif fd == nl.fileno():
                while True:
                    try:
                        data = nl.recv(1 << 16)
                    except BlockingIOError:
                        break
                    off = 0
                    while off + 16 <= len(data):
                        length, typ = struct.unpack_from("=IH", data, off)
                        if length < 16:
                            break
                        if typ >> 8 == NFNL_SUBSYS_NFTABLES and typ & 0xFF in (NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM):
                            name, keys = set_elements(data[off + 20:off + length])
                            out.write(json.dumps({"src": "nft", "t": t, "rt": rt, "set": name, "addrs": keys,
                                                  "op": "add" if typ & 0xFF == NFT_MSG_NEWSETELEM else "del"}) + "\n")
                        off += (length + 3) & ~3
            else:
                data = pending.pop() if pending else b""
                try:
                    data += ev.recv(1 << 16)
                except BlockingIOError:
                    pass
                if not data:
                    raise EOFError("the engine closed the event stream")
                for line in chunked.feed(data):
                    e = json.loads(line)
                    actor = e.get("Actor", {})
                    out.write(json.dumps({"src": "docker", "t": t, "rt": rt, "type": e.get("Type"),
                                          "action": e.get("Action"), "id": actor.get("ID"),
                                          "container": actor.get("Attributes", {}).get("container"),
                                          "timeNano": e.get("timeNano")}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
