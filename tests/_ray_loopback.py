"""Ray nodes on the loopback address only, for the tests: ``python -m tests._ray_loopback start ...``.

Ray's own ``ray start --node-ip-address 127.0.0.1`` does not keep that address on Linux: its CLI
replaces a loopback address by the host's outward one (``ray.scripts.scripts.start`` calls
``ray._private.services.resolve_ip_for_localhost``, which returns the address a UDP socket toward the
internet would use), and the node then advertises that address and its servers bind to every interface.
Ray's servers bind to loopback only when the node's address *is* ``127.0.0.1`` (the GCS, the raylet's
node manager and object manager, every worker's gRPC server, the dashboard agent and the runtime-env
agent), which Ray does by itself only on macOS and Windows. This module runs Ray's CLI with that one
rewrite turned off, so a test's head node and second node advertise and listen on 127.0.0.1 only.

A driver rewrites the address it is given the same way (``ray.init(address="127.0.0.1:...")`` connects
to the host's outward address, where such a cluster does not listen). :data:`DRIVER_ENV` is the
environment Ray reads to keep loopback addresses as they are in a driver (its meaning is "a one-machine
Ray", what Ray assumes on macOS and Windows): the tests' drivers run with it.

:func:`listening` lists the TCP sockets that processes listen on (read from ``/proc``), for the test
that checks it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: environment of a driver that must keep 127.0.0.1 as given (and whose own servers then bind to it)
DRIVER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def listening(pids: list[int]) -> list[tuple[int, str, int]]:
    """``(pid, address, port)`` of every TCP socket the processes ``pids`` listen on (IPv4 and IPv6).

    Read from ``/proc/net/tcp{,6}`` (state ``0A``) and each process's file descriptors; a process that
    ended meanwhile is skipped.
    """
    inodes: dict[str, tuple[str, int]] = {}
    for name, v6 in (("tcp", False), ("tcp6", True)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            f = line.split()
            if len(f) > 9 and f[3] == "0A":
                addr, port = f[1].split(":")
                inodes[f[9]] = (_address(addr, v6), int(port, 16))
    out = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                out.append((pid, *inodes[target[8:-1]]))
    return sorted(set(out))


def _address(hex_addr: str, v6: bool) -> str:
    """``/proc/net/tcp`` notation (host-order 32-bit words in hex) as a dotted or colon address."""
    words = [bytes.fromhex(hex_addr[i : i + 8])[::-1] for i in range(0, len(hex_addr), 8)]
    raw = b"".join(words)
    if not v6:
        return ".".join(str(b) for b in raw)
    if raw[:12] == b"\0" * 10 + b"\xff\xff":  # an IPv4 address mapped into IPv6
        return ".".join(str(b) for b in raw[12:])
    import ipaddress

    return str(ipaddress.IPv6Address(raw))


def is_loopback(address: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(address).is_loopback


def main() -> int:
    import ray._private.ray_constants as constants
    import ray._private.services as services
    from ray.scripts.scripts import main as ray_main

    services.resolve_ip_for_localhost = lambda host: host  # keep 127.0.0.1 as given
    # the tests' environment sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for the drivers (below); a node
    # started here must still be allowed to join a cluster
    constants.ENABLE_RAY_CLUSTER = True
    sys.argv[0] = "ray"
    return ray_main()


if __name__ == "__main__":
    sys.exit(main())
