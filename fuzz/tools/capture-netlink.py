#!/usr/bin/env python3
"""Records real rtnetlink datagrams as seeds for the netlink_route fuzz target.

Run as root inside a private network namespace, so nothing on the host changes:

    unshare --net python3 fuzz/tools/capture-netlink.py fuzz/corpus/netlink_route

It joins RTNLGRP_IPV4_ROUTE like the FIB watcher (harness/bgp/src/fib), makes the route changes the
harness observes (add, ECMP replace, nexthop objects, blackhole in another table, proto bgp,
delete) with `ip`, dumps the IPv4 routes with the watcher's dump sequence number, and writes every
datagram the kernel sent, unmodified, as `seed-<n>-<what>.bin`.
"""

import os
import socket
import struct
import subprocess
import sys
import time

NETLINK_ROUTE = 0
RTNLGRP_IPV4_ROUTE = 7
RTM_GETROUTE = 26
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
DUMP_SEQUENCE = 0x766D6267  # "vmbg", the FIB watcher's dump sequence number
AF_INET = 2


def ip(*args):
    subprocess.run(["ip", *args], check=True)


def drain(sock, what, out, seen):
    """Reads every datagram waiting (for up to 0.3 s of silence)."""
    sock.settimeout(0.3)
    n = 0
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return n
        if data in seen:
            continue
        seen.add(data)
        out.append((what, data))
        n += 1


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    ip("link", "set", "lo", "up")
    # A veth pair (the lab's links are veths; no dummy module needed).
    ip("link", "add", "ext0", "type", "veth", "peer", "name", "ext1")
    ip("addr", "add", "198.18.0.155/24", "dev", "ext0")
    ip("link", "set", "ext1", "up")
    ip("link", "set", "ext0", "up")

    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    sock.bind((0, 0))
    sock.setsockopt(270, 1, RTNLGRP_IPV4_ROUTE)  # SOL_NETLINK, NETLINK_ADD_MEMBERSHIP
    records = []
    seen = set()
    steps = [
        ("add", ["route", "add", "198.19.7.0/24", "via", "198.18.0.1", "proto", "bgp", "metric", "20"]),
        ("replace-ecmp", ["route", "replace", "198.19.7.0/24", "proto", "bgp", "metric", "20",
                          "nexthop", "via", "198.18.0.1", "nexthop", "via", "198.18.0.2"]),
        ("nexthop-object", ["nexthop", "add", "id", "12", "via", "198.18.0.1", "dev", "ext0"]),
        ("nexthop-object2", ["nexthop", "add", "id", "14", "via", "198.18.0.2", "dev", "ext0"]),
        ("nexthop-group", ["nexthop", "add", "id", "13", "group", "12/14"]),
        ("add-nhid", ["route", "add", "198.19.8.0/24", "nhid", "13", "proto", "bgp"]),
        ("blackhole-table100", ["route", "add", "blackhole", "198.19.255.1/32", "table", "100"]),
        ("add-host", ["route", "add", "198.19.9.1/32", "dev", "ext0", "proto", "static"]),
        ("del-ecmp", ["route", "del", "198.19.7.0/24"]),
        ("del-nhid", ["route", "del", "198.19.8.0/24"]),
        ("del-blackhole", ["route", "del", "blackhole", "198.19.255.1/32", "table", "100"]),
        ("add-ecmp-again", ["route", "add", "198.19.7.0/24", "proto", "bgp",
                            "nexthop", "via", "198.18.0.1", "weight", "1",
                            "nexthop", "via", "198.18.0.2", "weight", "2"]),
    ]
    for what, args in steps:
        ip(*args)
        time.sleep(0.05)
        drain(sock, what, records, seen)

    # The watcher's initial dump: RTM_GETROUTE, AF_INET, NLM_F_REQUEST | NLM_F_DUMP.
    body = struct.pack("=BBBBBBBBI", AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    header = struct.pack("=IHHII", 16 + len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP,
                         DUMP_SEQUENCE, 0)
    sock.send(header + body)
    drain(sock, "dump", records, seen)

    for i, (what, data) in enumerate(records):
        with open(os.path.join(out_dir, f"seed-{i:02d}-{what}.bin"), "wb") as f:
            f.write(data)
    print(f"{len(records)} datagrams written to {out_dir}")


if __name__ == "__main__":
    main()
