"""A private link with real faults: a network namespace joined to this one by a veth pair.

Everything here is created by :func:`lossy_link` and removed when it exits: one namespace, one
veth pair, a /30 from 10.213.0.0/16 that no interface on the machine uses, a tbf qdisc and an
nftables table inside the namespace. Nothing outside those is touched.

- bandwidth: ``tc qdisc … tbf`` on the host end shapes client→server traffic;
- loss: ``nft … numgen random mod 100 < N drop`` in the namespace on the veth only (input =
  data direction, output = the server's answers and ACKs);
- drops: ``ip link set … down/up`` on the host end, like Wi-Fi going away.
(netem is not in this kernel; round-trip delay comes from :mod:`tests.resilience.proxy`.)
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

NFT_TABLE = "relaypacs_faults"


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


def can_make_namespaces() -> str | None:
    """None when this machine can run the harness, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tc, nft)"
    for tool in ("ip", "tc", "nft"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (apt-get install iproute2 nftables)"
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    used = _run("ip", "-o", "-4", "addr").stdout
    start = os.getpid() % 4000
    for n in range(4000):
        k = (start + n) % 4000
        net = ipaddress.IPv4Network(f"10.213.{k // 64 + 100}.{(k % 64) * 4}/30")
        if f" {net[1]}/" not in used and f" {net[2]}/" not in used:
            return net
    raise RuntimeError("no free /30 in 10.213.100.0-10.213.162.255")


@dataclass
class Link:
    namespace: str
    host_if: str
    peer_if: str
    host_ip: str
    server_ip: str
    rate_kbit: int | None = None

    def in_namespace(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def shape(self, rate_kbit: int | None) -> None:
        """Limit client→server bandwidth (None: unlimited)."""
        self.rate_kbit = rate_kbit
        _run("tc", "qdisc", "del", "dev", self.host_if, "root", check=False)
        if rate_kbit is not None:
            # A burst of ~4 KB keeps the rate honest at 1 Mbit/s; 400 ms of queue like a 3G modem.
            # Faster links need a burst of at least a timer tick's worth of bytes (rate / HZ) or
            # tbf cannot reach its rate: 1/100 s of it from 3.2 Mbit/s up.
            burst_kbit = max(32, rate_kbit // 100)
            _run(
                "tc", "qdisc", "add", "dev", self.host_if, "root", "tbf",
                "rate", f"{rate_kbit}kbit", "burst", f"{burst_kbit}kbit", "latency", "400ms",
            )  # fmt: skip

    def loss(self, inbound: int = 0, outbound: int = 0) -> None:
        """Drop ``inbound`` % of packets reaching the server and ``outbound`` % of its packets."""
        script = [f"flush table inet {NFT_TABLE}"] if self._has_table() else []
        script += [
            f"add table inet {NFT_TABLE}",
            f"add chain inet {NFT_TABLE} in {{ type filter hook input priority 0; }}",
            f"add chain inet {NFT_TABLE} out {{ type filter hook output priority 0; }}",
        ]
        # Only packets on the veth: the gateway's own traffic to the PACS beside it (loopback
        # inside the namespace) crosses the same hooks and must stay clean.
        link = f'"{self.peer_if}"'
        if inbound:
            script.append(
                f"add rule inet {NFT_TABLE} in iifname {link} "
                f"numgen random mod 100 < {inbound} drop"
            )
        if outbound:
            script.append(
                f"add rule inet {NFT_TABLE} out oifname {link} "
                f"numgen random mod 100 < {outbound} drop"
            )
        subprocess.run(
            self.in_namespace("nft", "-f", "-"),
            input="\n".join(script) + "\n",
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def _has_table(self) -> bool:
        listed = _run(*self.in_namespace("nft", "list", "tables"), check=False).stdout
        return NFT_TABLE in listed

    def down(self) -> None:
        _run("ip", "link", "set", self.host_if, "down")

    def up(self) -> None:
        _run("ip", "link", "set", self.host_if, "up")
        # The qdisc survives a down/up, but set it again so the rate is certain.
        self.shape(self.rate_kbit)


_links = itertools.count()


@contextmanager
def lossy_link() -> Iterator[Link]:
    # Interface names have at most 15 characters: "rph" + pid + a per-process counter.
    suffix = f"{os.getpid() % 100000}x{next(_links) % 1000}"
    namespace = f"relaypacs-{suffix}"
    host_if, peer_if = f"rph{suffix}", f"rpn{suffix}"
    net = _free_subnet()
    host_ip, server_ip = str(net[1]), str(net[2])
    _run("ip", "netns", "add", namespace)
    try:
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _run("ip", "link", "set", peer_if, "netns", namespace)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        inside = ["ip", "netns", "exec", namespace]
        _run(*inside, "ip", "addr", "add", f"{server_ip}/30", "dev", peer_if)
        _run(*inside, "ip", "link", "set", peer_if, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        yield Link(namespace, host_if, peer_if, host_ip, server_ip)
    finally:
        # Deleting the namespace deletes its veth end, the pair, the qdisc and the nft table.
        _run("ip", "link", "del", host_if, check=False)
        _run("ip", "netns", "del", namespace, check=False)
