"""The sites' link emulator: one user-space process that owns a TUN device per place.

A place is the hub (the root network namespace, where the hub cluster, the operator and the
tests run) or a site (its own network namespace). Each place gets one TUN device, an address
`<net>.<index>.1` and a route for `<net>.0.0/16` through that device, and nothing else: no
default route, no route off the machine. Every packet between places crosses this process,
which reads it from the source place's TUN, looks up the destination place from the
destination address, and writes it into that place's TUN after the links' delay, or drops it.

A packet from place A to place B crosses A's link (up) and then B's link (down). Each
direction of a link adds half the link's RTT, plus a uniform jitter in +-half its jitter, and
drops the packet with the link's loss probability; a partitioned or failed link drops
everything. Packets between two places leave in the order they came in (a later packet never
overtakes an earlier one, as on a real path, where TCP would take reordering for loss), so
jitter only ever stretches a gap. Queues are bounded: a place with `QUEUE_LIMIT` packets waiting
for it drops further ones (tail drop).

The links are read from the sites' state file (JSON) at start and whenever a client sends
`{"op": "reload"}` on the control socket; `{"op": "stats"}` returns the counters. The process
ends on SIGTERM/SIGINT or after `--max-lifetime-s`, and its TUN devices, with their addresses
and routes, disappear with it. Standard library only; it runs as root.

    python3 e2e/netemu.py --state DIR/sites.json --control DIR/emulator.sock --max-lifetime-s S
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MTU = 1500
# Packets waiting for one place; at 1500 bytes, at most 6 MB per place.
QUEUE_LIMIT = 4096
# Packets read from one device before the others get their turn.
READ_BATCH = 64
# How long the loop may sleep with nothing due: the control socket and the deadline are looked
# at least this often.
IDLE_S = 0.2
DEVICE_IN_SITE = "uplink"


@dataclass
class Link:
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    # "up", "down" or "partition": only "up" lets packets through.
    state: str = "up"

    def one_way_s(self, rng: random.Random) -> float:
        half = self.rtt_ms / 2.0
        spread = self.jitter_ms / 2.0
        delay = half + (rng.uniform(-spread, spread) if spread > 0 else 0.0)
        return max(0.0, delay) / 1000.0

    def drops(self, rng: random.Random) -> bool:
        if self.state != "up":
            return True
        return self.loss_pct > 0 and rng.random() * 100.0 < self.loss_pct


@dataclass
class Place:
    name: str
    index: int
    namespace: str | None
    device: str
    fd: int = -1
    link: Link = field(default_factory=Link)
    queued: int = 0
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("sent", "delivered", "lost", "cut", "queue_full", "unroutable"), 0
        )
    )


def open_tun(name: str) -> int:
    """A new TUN device `name` (IPv4 packets, no packet-info header), non-blocking; it goes away
    when the descriptor is closed."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def address(net: str, index: int) -> str:
    return f"{net}.{index}.1"


def configure(place: Place, net: str) -> None:
    """Gives the place's TUN its address and the route for the testbed's prefix, in the place's
    own namespace (a site's TUN is moved there and renamed `uplink`)."""
    own = address(net, place.index)
    prefix = f"{net}.0.0/16"
    if place.namespace is None:
        _ip("addr", "add", f"{own}/32", "dev", place.device)
        # No IPv6 link-local address: the places speak IPv4 only.
        _ip("link", "set", place.device, "addrgenmode", "none")
        _ip("link", "set", place.device, "mtu", str(MTU), "up")
        _ip("route", "add", prefix, "dev", place.device, "src", own)
        return
    ns = place.namespace
    _ip("link", "set", place.device, "netns", ns)
    _ip("-n", ns, "link", "set", place.device, "name", DEVICE_IN_SITE)
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "addr", "add", f"{own}/32", "dev", DEVICE_IN_SITE)
    _ip("-n", ns, "link", "set", DEVICE_IN_SITE, "addrgenmode", "none")
    _ip("-n", ns, "link", "set", DEVICE_IN_SITE, "mtu", str(MTU), "up")
    _ip("-n", ns, "route", "add", prefix, "dev", DEVICE_IN_SITE, "src", own)


class Emulator:
    def __init__(self, state_file: Path, control: Path, max_lifetime_s: float) -> None:
        self.state_file = state_file
        self.control_path = control
        self.deadline = time.monotonic() + max_lifetime_s
        state = json.loads(state_file.read_text())
        self.net: str = state["net"]
        self.net_bytes = bytes(int(part) for part in self.net.split("."))
        self.places: dict[int, Place] = {
            entry["index"]: Place(
                entry["name"], entry["index"], entry["namespace"], entry["device"]
            )
            for entry in state["places"]
        }
        self.rng = random.Random()
        # (due, sequence, source index, destination index, packet)
        self.heap: list[tuple[float, int, int, int, bytes]] = []
        self.sequence = 0
        self.last_due: dict[tuple[int, int], float] = {}
        self.stopping = False
        self.control: socket.socket | None = None
        self.reload()

    def reload(self) -> None:
        state = json.loads(self.state_file.read_text())
        by_name = {place.name: place for place in self.places.values()}
        for name, link in state.get("links", {}).items():
            if name in by_name:
                by_name[name].link = Link(
                    float(link["rtt_ms"]),
                    float(link["jitter_ms"]),
                    float(link["loss_pct"]),
                    str(link["state"]),
                )

    def open(self) -> None:
        for place in self.places.values():
            place.fd = open_tun(place.device)
        for place in self.places.values():
            configure(place, self.net)
        self.control_path.unlink(missing_ok=True)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.bind(str(self.control_path))
        self.control_path.chmod(0o600)
        self.control.listen(8)
        self.control.setblocking(False)

    def close(self) -> None:
        for place in self.places.values():
            if place.fd >= 0:
                os.close(place.fd)
                place.fd = -1
        if self.control is not None:
            self.control.close()
            self.control_path.unlink(missing_ok=True)

    # --- forwarding ---------------------------------------------------------------------------

    def receive(self, source: Place, packet: bytes, now: float) -> None:
        source.counters["sent"] += 1
        if len(packet) < 20 or packet[0] >> 4 != 4 or packet[16:18] != self.net_bytes[:2]:
            source.counters["unroutable"] += 1
            return
        target = self.places.get(packet[18])
        if target is None or target is source:
            source.counters["unroutable"] += 1
            return
        if source.link.state != "up" or target.link.state != "up":
            source.counters["cut"] += 1
            return
        if source.link.drops(self.rng) or target.link.drops(self.rng):
            source.counters["lost"] += 1
            return
        if target.queued >= QUEUE_LIMIT:
            source.counters["queue_full"] += 1
            return
        due = now + source.link.one_way_s(self.rng) + target.link.one_way_s(self.rng)
        pair = (source.index, target.index)
        due = max(due, self.last_due.get(pair, 0.0))
        self.last_due[pair] = due
        self.sequence += 1
        target.queued += 1
        heapq.heappush(self.heap, (due, self.sequence, source.index, target.index, packet))

    def deliver_due(self, now: float) -> None:
        while self.heap and self.heap[0][0] <= now:
            _, _, source_index, index, packet = heapq.heappop(self.heap)
            source, target = self.places[source_index], self.places[index]
            target.queued -= 1
            # A link cut while the packet was on its way loses it.
            if source.link.state != "up" or target.link.state != "up" or target.fd < 0:
                source.counters["cut"] += 1
                continue
            try:
                os.write(target.fd, packet)
                source.counters["delivered"] += 1
            except OSError:
                source.counters["queue_full"] += 1

    def run(self) -> None:
        assert self.control is not None
        by_fd = {place.fd: place for place in self.places.values()}
        readers = [*by_fd, self.control.fileno()]
        while not self.stopping:
            now = time.monotonic()
            if now >= self.deadline:
                print("netemu: maximum lifetime reached", file=sys.stderr, flush=True)
                break
            timeout = IDLE_S
            if self.heap:
                timeout = min(timeout, max(0.0, self.heap[0][0] - now))
            try:
                ready, _, _ = select.select(readers, [], [], timeout)
            except InterruptedError:
                continue
            now = time.monotonic()
            for fd in ready:
                if fd == self.control.fileno():
                    self.serve_control()
                    continue
                place = by_fd[fd]
                for _ in range(READ_BATCH):
                    try:
                        packet = os.read(fd, MTU + 64)
                    except BlockingIOError:
                        break
                    self.receive(place, packet, now)
            self.deliver_due(time.monotonic())

    # --- control ------------------------------------------------------------------------------

    def serve_control(self) -> None:
        assert self.control is not None
        try:
            connection, _ = self.control.accept()
        except BlockingIOError:
            return
        with connection:
            connection.settimeout(1.0)
            try:
                request = json.loads(_read_line(connection))
                reply = self.answer(request)
            except (OSError, ValueError, KeyError) as error:
                reply = {"ok": False, "error": str(error)}
            with contextlib.suppress(OSError):
                connection.sendall(json.dumps(reply).encode() + b"\n")

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "reload":
            self.reload()
            return {"ok": True}
        if op == "stats":
            return {
                "ok": True,
                "pid": os.getpid(),
                "queued": len(self.heap),
                "places": {
                    place.name: {**place.counters, "link": place.link.__dict__}
                    for place in self.places.values()
                },
            }
        return {"ok": False, "error": f"unknown op {op!r}"}


def _read_line(connection: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < 65536:
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def request(control: Path, message: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """Sends one control message to a running emulator and returns its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        client.connect(str(control))
        client.sendall(json.dumps(message).encode() + b"\n")
        reply: dict[str, Any] = json.loads(_read_line(client))
    if not reply.get("ok"):
        raise RuntimeError(f"emulator: {reply.get('error')}")
    return reply


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netemu", description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--max-lifetime-s", type=float, required=True)
    args = parser.parse_args(argv)
    emulator = Emulator(args.state, args.control, args.max_lifetime_s)

    def stop(_signal: int, _frame: object) -> None:
        emulator.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        emulator.open()
        print("netemu: ready", flush=True)
        emulator.run()
    finally:
        emulator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
