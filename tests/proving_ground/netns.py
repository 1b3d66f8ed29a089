"""A throwaway network namespace joined to the host by a veth pair, with nftables faults and a
`tc tbf` bandwidth limit on the client side. Only addresses we create; always torn down."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from attrs import frozen

#: The /16 we carve /30 links from (checked unused on the host before each use).
NET_PREFIX = "10.213"
#: The nftables table we own inside the client namespace.
TABLE = "wsc_chaos"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=20)


def unavailable() -> str | None:
    """Why the namespace tier cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables, tc)"
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (CI installs nftables in .ci/steps/40-proving-ground.sh)"
    probe = f"wscprobe{os.getpid() % 100000}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` does not work here: {made.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


@frozen
class Link:
    """A client namespace ``ns`` whose address ``client_ip`` reaches the host at ``host_ip``."""

    ns: str
    host_if: str
    client_if: str
    host_ip: str
    client_ip: str

    def exec_argv(self, *argv: str) -> list[str]:
        """``argv`` run inside the client namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def nft(self, script: str) -> None:
        done = subprocess.run(self.exec_argv("nft", "-f", "-"), input=script, capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            raise RuntimeError(f"nft failed: {done.stderr}\n{script}")

    def loss(self, percent: int) -> None:
        """Drops ``percent`` % of packets in and out of the client namespace (random)."""
        self.clear_faults()
        self.nft(
            f"table inet {TABLE} {{\n"
            f"  chain in {{ type filter hook input priority 0; numgen random mod 100 < {percent} drop; }}\n"
            f"  chain out {{ type filter hook output priority 0; numgen random mod 100 < {percent} drop; }}\n"
            "}\n"
        )

    def black_hole(self) -> None:
        """Drops every packet in and out of the client namespace (nothing is closed)."""
        self.clear_faults()
        self.nft(
            f"table inet {TABLE} {{\n"
            "  chain in { type filter hook input priority 0; drop; }\n"
            "  chain out { type filter hook output priority 0; drop; }\n"
            "}\n"
        )

    def clear_faults(self) -> None:
        _run(*self.exec_argv("nft", "delete", "table", "inet", TABLE), check=False)

    def bandwidth(self, rate: str) -> None:
        """Limits the client's outgoing rate with `tc tbf` (e.g. ``"256kbit"``)."""
        _run(*self.exec_argv("tc", "qdisc", "replace", "dev", self.client_if, "root", "tbf", "rate", rate,
                             "burst", "16kb", "latency", "500ms"))


@contextmanager
def client_namespace() -> Iterator[Link]:
    """Creates the namespace and veth pair, yields the link, and always removes both."""
    tag = f"{os.getpid() % 10000}{random.randrange(100, 1000)}"
    used = _run("ip", "-4", "addr").stdout
    third = next(n for n in random.sample(range(1, 255), 254) if f"{NET_PREFIX}.{n}." not in used)
    link = Link(f"wsc{tag}", f"wh{tag}", f"wc{tag}", f"{NET_PREFIX}.{third}.1", f"{NET_PREFIX}.{third}.2")
    try:
        _run("ip", "netns", "add", link.ns)
        _run("ip", "link", "add", link.host_if, "type", "veth", "peer", "name", link.client_if)
        _run("ip", "link", "set", link.client_if, "netns", link.ns)
        _run("ip", "addr", "add", f"{link.host_ip}/30", "dev", link.host_if)
        _run("ip", "link", "set", link.host_if, "up")
        _run(*link.exec_argv("ip", "addr", "add", f"{link.client_ip}/30", "dev", link.client_if))
        _run(*link.exec_argv("ip", "link", "set", link.client_if, "up"))
        _run(*link.exec_argv("ip", "link", "set", "lo", "up"))
        yield link
    finally:
        _run("ip", "netns", "del", link.ns, check=False)  # takes its end of the veth pair with it
        _run("ip", "link", "del", link.host_if, check=False)
