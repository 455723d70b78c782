"""Pods' networks at a site: each pod in a network namespace of its own, on the site's pod bridge.

A site `S` (e2e/sites.py) owns 10.77.<i>.0/24 and has the address 10.77.<i>.1; the link
emulator delivers to its namespace everything for that /24. Its node agent puts a bridge
`pods` in the site's namespace with the upper half, 10.77.<i>.128/25 (the gateway .129), and
forwards between it and the site's uplink. Each pod gets the namespace `ctm-S.<key>` (swept
with the site's: sites.pod_namespaces), a veth whose site end is on the bridge and whose pod end
is `eth0` with the next free address, and the route for the testbed's 10.77.0.0/16 through the
gateway, and nothing else: no default route, so a pod reaches the places of the testbed and no
further. Two pods never share a namespace: Ray's fixed ports would collide.

Names resolve through `/etc/netns/<namespace>/hosts`, which `ip netns exec` binds over
/etc/hosts for the pod's processes: the pod's own hostname (the pod's name, in a UTS namespace
of its own) and the cluster's Services, written by the agent and rewritten in place (a bind
mount follows the inode) when they change. There is no DNS server: `resolv.conf` names no
nameserver, only the search domains.

The agent adds the namespaces (`ip netns add`, a bind mount under /run/netns), so it runs in
the site's network namespace but in the machine's mount namespace (`Sites.start_process(...,
host_mounts=True)`): under `ip netns exec` its mounts would be seen by no one else.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from e2e import netemu
from e2e.sites import NET, pod_namespace

BRIDGE = "pods"
NETNS_ETC = Path("/etc/netns")
CLUSTER_DOMAIN = "cluster.local"


class PodNetworkError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise PodNetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def pod_cidr(site_address: str) -> ipaddress.IPv4Network:
    """The pods' half of the site's /24: 10.77.i.1 gives 10.77.i.128/25."""
    site = ipaddress.IPv4Network(f"{site_address}/24", strict=False)
    return list(site.subnets(new_prefix=25))[1]


def gateway(cidr: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    return cidr.network_address + 1


def pod_addresses(cidr: ipaddress.IPv4Network) -> list[ipaddress.IPv4Address]:
    """The addresses pods may take: every host of the range but the gateway."""
    return [address for address in cidr.hosts() if address != gateway(cidr)]


def ensure_bridge(cidr: ipaddress.IPv4Network) -> None:
    """The bridge in the caller's (the site's) namespace, with the gateway's address, and
    forwarding on. Idempotent."""
    if _ip("link", "show", BRIDGE, check=False).returncode != 0:
        _ip("link", "add", BRIDGE, "type", "bridge")
    own = f"{gateway(cidr)}/{cidr.prefixlen}"
    if own not in _ip("-4", "addr", "show", "dev", BRIDGE).stdout:
        _ip("addr", "add", own, "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "mtu", str(netemu.MTU), "up")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


def _veth(key: str) -> str:
    # Interface names are at most 15 characters.
    return f"vp{key[:12]}"


def exists(site: str, key: str) -> bool:
    return (Path("/run/netns") / pod_namespace(site, key)).exists()


def add_pod(
    site: str, key: str, address: ipaddress.IPv4Address, cidr: ipaddress.IPv4Network
) -> str:
    """Makes the pod's namespace and its link to the bridge; returns the namespace's name.
    Whatever an earlier, interrupted attempt left of it is removed first."""
    name = pod_namespace(site, key)
    remove_pod(site, key)
    _ip("netns", "add", name)
    veth = _veth(key)
    _ip("link", "add", veth, "mtu", str(netemu.MTU), "type", "veth",
        "peer", "name", "eth0", "mtu", str(netemu.MTU), "netns", name)  # fmt: skip
    _ip("link", "set", veth, "master", BRIDGE, "up")
    _ip("-n", name, "link", "set", "lo", "up")
    _ip("-n", name, "addr", "add", f"{address}/{cidr.prefixlen}", "dev", "eth0")
    _ip("-n", name, "link", "set", "eth0", "up")
    _ip("-n", name, "route", "add", f"{NET}.0.0/16", "via", str(gateway(cidr)))
    return name


def remove_pod(site: str, key: str) -> None:
    """Removes the pod's namespace (its end of the veth goes with it, and the site's end with
    that) and its files. Idempotent. The pod's processes must be gone first."""
    name = pod_namespace(site, key)
    _ip("link", "del", _veth(key), check=False)
    if (Path("/run/netns") / name).exists():
        _ip("netns", "del", name)
    with contextlib.suppress(FileNotFoundError):
        for path in (NETNS_ETC / name).iterdir():
            path.unlink()
    with contextlib.suppress(FileNotFoundError):
        (NETNS_ETC / name).rmdir()


def namespace_pids(site: str, key: str) -> list[int]:
    """The processes in the pod's namespace: all of the pod's, whatever they forked."""
    return pids_in(pod_namespace(site, key))


def pids_in(namespace: str) -> list[int]:
    """The processes in a named network namespace."""
    return [int(pid) for pid in _ip("netns", "pids", namespace, check=False).stdout.split()]


def hosts_file(hostname: str, address: str, services: Iterable[tuple[str, Sequence[str]]]) -> str:
    """/etc/hosts for one pod: `services` are (address, names) of the cluster's Services."""
    lines = ["127.0.0.1\tlocalhost", f"{address}\t{hostname}"]
    lines += [f"{service_address}\t{' '.join(names)}" for service_address, names in services]
    return "\n".join(lines) + "\n"


def resolv_conf(namespace: str) -> str:
    return (
        f"search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n"
        "options ndots:5\n"
    )


def write_names(site: str, key: str, hosts: str, resolv: str) -> None:
    """Writes the pod's hosts and resolv.conf, in place when they exist: a running process
    sees them through a bind mount of the file, which a rename would leave on the old one."""
    directory = NETNS_ETC / pod_namespace(site, key)
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in (("hosts", hosts), ("resolv.conf", resolv)):
        path = directory / name
        if path.exists() and path.read_text() == content:
            continue
        with path.open("r+" if path.exists() else "w") as output:
            output.write(content)
            output.truncate()
            output.flush()
            os.fsync(output.fileno())
