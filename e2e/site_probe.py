"""UDP probes across the sites' links: an echo server to run at a site, and a prober.

    python3 e2e/site_probe.py echo --bind ADDR --port P --lifetime-s S
    python3 e2e/site_probe.py probe --to ADDR --port P --count N --interval-s I

The echo server sends every probe back and counts them; a `count` request (b"C") returns how
many it received, which gives the loss of one direction. The prober sends `count` probes at a
fixed interval, collects the echoes as they come, and waits `timeout_s` after the last. Every
loop is bounded in count and time. Standard library only, so it runs inside a namespace with
`ip netns exec` and any python3.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

PROBE = b"P"
COUNT = b"C"
RESET = b"R"
PAYLOAD = 64
COUNT_ATTEMPTS = 30


def echo(bind: str, port: int, lifetime_s: float) -> None:
    received = 0
    deadline = time.monotonic() + lifetime_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind((bind, port))
        while (left := deadline - time.monotonic()) > 0:
            server.settimeout(min(left, 1.0))
            try:
                data, peer = server.recvfrom(2048)
            except TimeoutError:
                continue
            if data[:1] == PROBE:
                received += 1
                server.sendto(data, peer)
            elif data[:1] == COUNT:
                server.sendto(COUNT + data[1:9] + struct.pack("!Q", received), peer)
            elif data[:1] == RESET:
                received = 0
                server.sendto(RESET + data[1:9], peer)


@dataclass
class ProbeResult:
    sent: int
    # Round-trip times (ms) of the probes that came back, in the order they were sent.
    rtts_ms: list[float]
    # When each answered probe was sent, seconds from the first.
    sent_at_s: list[float]

    @property
    def received(self) -> int:
        return len(self.rtts_ms)


def probe(
    address: str, port: int, count: int, interval_s: float, timeout_s: float = 1.0
) -> ProbeResult:
    """Sends `count` probes, one every `interval_s`, and collects the echoes until `timeout_s`
    after the last was sent."""
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setblocking(False)
        start = time.monotonic()
        for sequence in range(count + 1):
            until = start + sequence * interval_s if sequence < count else None
            if until is None:
                until = start + (count - 1) * interval_s + timeout_s
            while (left := until - time.monotonic()) > 0:
                ready, _, _ = select.select([client], [], [], left)
                if not ready:
                    break
                while True:
                    try:
                        data = client.recv(2048)
                    except BlockingIOError:
                        break
                    now = time.monotonic()
                    if data[:1] == PROBE and len(data) >= 9:
                        (answered,) = struct.unpack("!Q", data[1:9])
                        if answered in sent_at and answered not in rtts:
                            rtts[answered] = (now - sent_at[answered]) * 1000.0
            if sequence < count:
                sent_at[sequence] = time.monotonic()
                packet = PROBE + struct.pack("!Q", sequence)
                client.sendto(packet.ljust(PAYLOAD, b"."), (address, port))
    order = sorted(rtts)
    return ProbeResult(
        count, [rtts[index] for index in order], [sent_at[index] - start for index in order]
    )


def _ask(address: str, port: int, kind: bytes, timeout_s: float) -> int:
    """Asks the echo server (retrying, as the link may lose the question or the answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(timeout_s)
        for attempt in range(COUNT_ATTEMPTS):
            tag = struct.pack("!Q", attempt)
            client.sendto(kind + tag, (address, port))
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    data = client.recv(2048)
                except TimeoutError:
                    break
                if data[:1] == kind and data[1:9] == tag:
                    return struct.unpack("!Q", data[9:17])[0] if kind == COUNT else 0
    raise TimeoutError(f"the echo server at {address}:{port} did not answer")


def received_count(address: str, port: int, timeout_s: float = 0.5) -> int:
    return _ask(address, port, COUNT, timeout_s)


def reset_count(address: str, port: int, timeout_s: float = 0.5) -> None:
    _ask(address, port, RESET, timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="site_probe", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("echo")
    server.add_argument("--bind", required=True)
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--lifetime-s", type=float, required=True)
    client = commands.add_parser("probe")
    client.add_argument("--to", required=True)
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--count", type=int, required=True)
    client.add_argument("--interval-s", type=float, required=True)
    client.add_argument("--timeout-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.command == "echo":
        echo(args.bind, args.port, args.lifetime_s)
        return 0
    result = probe(args.to, args.port, args.count, args.interval_s, args.timeout_s)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
