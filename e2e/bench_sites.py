"""Measures the sites' link emulator: RTT and loss set vs measured, and its CPU per packet.

    python -m e2e.bench_sites --dir DIR [--rtts 0,10,40,100,200] [--losses 0,5,20,50]
                              [--rates 500,2000,5000] [--seconds 3]

Makes a sites network with one site, runs a UDP echo server there, probes it from the root
namespace, prints Markdown tables, and destroys the network. Every probe run is bounded in
count and time. Runs as root.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from e2e import site_probe
from e2e.sites import Sites

PORT = 7000
SITE = "delft"
PROBE = Path(__file__).resolve().parent / "site_probe.py"
CLOCK_TICKS = 100  # USER_HZ: /proc/<pid>/stat counts CPU time in these


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_sites", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--rtts", type=numbers, default=numbers("0,10,40,100,200"))
    parser.add_argument("--losses", type=numbers, default=numbers("0,5,20,50"))
    parser.add_argument("--rates", type=numbers, default=numbers("500,2000,5000"))
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    sites = Sites(args.dir)
    sites.create([SITE], max_lifetime_s=600.0)
    try:
        address = sites.address(SITE)
        sites.start_process(
            SITE, "echo",
            [sys.executable, str(PROBE), "echo", "--bind", address, "--port", str(PORT),
             "--lifetime-s", "600"],
            args.dir / "echo.log",
        )  # fmt: skip
        site_probe.reset_count(address, PORT)
        print("| RTT set (ms) | mean (ms) | median (ms) | p95 (ms) | probes |")
        print("|---|---|---|---|---|")
        for rtt in args.rtts:
            sites.shape(SITE, rtt)
            result = site_probe.probe(address, PORT, count=100, interval_s=0.02)
            rtts = sorted(result.rtts_ms)
            print(
                f"| {rtt:g} | {statistics.mean(rtts):.2f} | {statistics.median(rtts):.2f} "
                f"| {rtts[int(0.95 * (len(rtts) - 1))]:.2f} | {result.received}/{result.sent} |"
            )
        print()
        print("| loss set (%, each way) | lost there (%) | lost back (%) | round trip (%) "
              "| expected round trip (%) | probes |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for loss in args.losses:
            sites.shape(SITE, 0.0, loss_pct=loss)
            site_probe.reset_count(address, PORT)
            count = 2000
            result = site_probe.probe(address, PORT, count=count, interval_s=0.001, timeout_s=0.5)
            arrived = site_probe.received_count(address, PORT)
            there = 100.0 * (1 - arrived / count)
            back = 100.0 * (1 - result.received / arrived)
            trip = 100.0 * (1 - result.received / count)
            expected = 100.0 * (1 - (1 - loss / 100.0) ** 2)
            print(
                f"| {loss:g} | {there:.1f} | {back:.1f} | {trip:.1f} | {expected:.1f} | {count} |"
            )
        print()
        sites.shape(SITE, 0.0)
        pid = sites.emulator_pid()
        assert pid is not None
        print("| probes/s offered | packets/s forwarded | emulator CPU (% of a core) "
              "| CPU per packet (µs) |")  # fmt: skip
        print("|---|---|---|---|")
        for rate in args.rates:
            before_stats = sites.stats()["places"]
            before_cpu, started = cpu_seconds(pid), time.monotonic()
            count = int(rate * args.seconds)
            site_probe.probe(address, PORT, count=count, interval_s=1.0 / rate, timeout_s=0.2)
            cpu, elapsed = cpu_seconds(pid) - before_cpu, time.monotonic() - started
            after_stats = sites.stats()["places"]
            packets = sum(
                after_stats[name]["delivered"] - before_stats[name]["delivered"]
                for name in after_stats
            )
            print(
                f"| {rate:g} | {packets / elapsed:.0f} | {100 * cpu / elapsed:.1f} "
                f"| {1e6 * cpu / max(packets, 1):.1f} |"
            )
    finally:
        sites.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
