"""Measures the testbed's link monitoring: recorded RTT and loss against what the links are set
to, and the CPU and memory of Prometheus, the exporters and the emulator, for N sites.

    python -m e2e.bench_monitoring --dir DIR [--sites 4] [--measure-s 60]

It makes its own sites network (no clusters), starts e2e/monitoring.py's processes, shapes the
i-th site's link from the SHAPES list (cycled), waits for the 30 s windows to fill with shaped
probes, reads the recorded series and counts CPU over `--measure-s`; then stops everything.
Root only (sites); one sites network per machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from e2e.monitoring import Monitoring
from e2e.sites import Sites
from e2e.testbed import free_port

# (RTT ms, loss % each way) per site, in turn.
SHAPES = [(20.0, 0.0), (80.0, 0.0), (200.0, 0.0), (80.0, 30.0)]
SETTLE_S = 36.0


def _query(url: str, expr: str) -> dict[tuple[str, str], float]:
    address = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(address, timeout=10) as response:
        result = json.load(response)["data"]["result"]
    return {
        (item["metric"]["source_site"], item["metric"]["target_site"]): float(item["value"][1])
        for item in result
    }


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_monitoring", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--measure-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    names = [f"s{index}" for index in range(1, args.sites + 1)]
    sites = Sites(args.dir / "sites")
    sites.create(names, max_lifetime_s=900.0)
    watched = Monitoring(args.dir / "monitoring", sites)
    try:
        url = watched.up(free_port)
        shaped_at = time.monotonic()
        for index, site in enumerate(names):
            rtt_ms, loss_pct = SHAPES[index % len(SHAPES)]
            sites.shape(site, rtt_ms, loss_pct=loss_pct)
        time.sleep(max(0.0, shaped_at + SETTLE_S - time.monotonic()))
        rtt = _query(url, "continuum:link_rtt_seconds")
        loss = _query(url, "continuum:link_loss_ratio")
        probes = _query(url, "continuum:link_probes")
        print("| pair | RTT set (ms) | recorded (ms) | loss set (round trip) | recorded | probes |")
        print("|---|---|---|---|---|---|")
        for index, site in enumerate(names):
            rtt_ms, loss_pct = SHAPES[index % len(SHAPES)]
            pair = ("hub", site)
            expected = 1.0 - (1.0 - loss_pct / 100.0) ** 2
            recorded = f"{rtt[pair] * 1000:.1f}" if pair in rtt else "none"
            print(f"| hub→{site} | {rtt_ms:g} | {recorded} | {expected:.2f} | "
                  f"{loss.get(pair, float('nan')):.2f} | {probes.get(pair, 0):g} |")  # fmt: skip
        if len(names) >= 2:
            pair = (names[0], names[1])
            set_ms = SHAPES[0][0] + SHAPES[1 % len(SHAPES)][0]
            recorded = f"{rtt[pair] * 1000:.1f}" if pair in rtt else "none"
            print(f"| {pair[0]}→{pair[1]} | {set_ms:g} | {recorded} | 0.00 | "
                  f"{loss.get(pair, float('nan')):.2f} | {probes.get(pair, 0):g} |")  # fmt: skip
        pids = dict(watched.processes())
        emulator = sites.emulator_pid()
        if emulator:
            pids["emulator"] = emulator
        before = {name: _cpu_s(pid) for name, pid in pids.items()}
        started = time.monotonic()
        time.sleep(args.measure_s)
        elapsed = time.monotonic() - started
        after = {name: _cpu_s(pid) for name, pid in pids.items()}
        pairs = len(names) + len(names) * (len(names) - 1)
        print(f"\n{len(names) + 1} places, {pairs} pairs probed once a second, {elapsed:.0f} s:")
        exporters = sum(after[n] - before[n] for n in pids if n.endswith("exporter"))
        for name in ("prometheus", "emulator"):
            if name in pids:
                print(f"- {name}: {100 * (after[name] - before[name]) / elapsed:.1f}% of a core, "
                      f"{_rss_mib(pids[name]):.0f} MiB")  # fmt: skip
        rss = sum(_rss_mib(pid) for name, pid in pids.items() if name.endswith("exporter"))
        print(f"- {len(names) + 1} exporters together: {100 * exporters / elapsed:.1f}% of a core, "
              f"{rss:.0f} MiB")  # fmt: skip
    finally:
        watched.down()
        sites.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
