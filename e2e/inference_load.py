"""Real requests to an inference shard, timed where they are sent: run it at a data site (inside
the site's network namespace, `Sites.command`) and the latencies are the ones that site sees,
through its link and the server's.

    python -m e2e.inference_load --url http://10.77.1.130:8000/ --requests 200 [--rows 4]
        [--warmup 10] [--max-s 120]

Requests go one after another over one kept-alive connection (a camera gateway's steady
stream, not a load test; made again after an error), each a batch of `--rows` feature rows of
its site's sensor data. It prints one JSON line: the count,
the errors (any answer but 200 with as many modes as rows, or no answer within 10 s), and the
latencies' p50, p99 and maximum in milliseconds. Bounded: at most `--requests` requests and
`--max-s` seconds. Standard library and the workloads' data only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from continuum.workloads.sensors import site_dataset
from e2e.bench_stats import percentile

REQUEST_TIMEOUT_S = 10.0
BATCHES = 8


class Client:
    """One HTTP connection to the server, kept alive between requests (no proxy: cluster
    addresses are dialled directly), and made again after any error."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.path = parts.path or "/"
        self.connection: http.client.HTTPConnection | None = None

    def ask(self, rows: list[list[float]]) -> bool:
        body = json.dumps({"features": rows}).encode()
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=REQUEST_TIMEOUT_S
                )
            self.connection.request("POST", self.path, body, {"Content-Type": "application/json"})
            reply = self.connection.getresponse()
            answer = json.loads(reply.read())
            return reply.status == 200 and len(answer.get("modes", [])) == len(rows)
        except (OSError, ValueError, http.client.HTTPException):
            if self.connection is not None:
                self.connection.close()
            self.connection = None
            return False


def run(
    url: str, site: str, requests: int, rows: int, warmup: int, max_s: float
) -> dict[str, object]:
    # The site's test split (a quarter of the samples) holds BATCHES batches of `rows`.
    features = site_dataset(site, rows * BATCHES * 4)[1].features.tolist()
    batches = [features[i * rows : (i + 1) * rows] for i in range(BATCHES)]
    client = Client(url)
    deadline = time.monotonic() + max_s
    for index in range(warmup):
        client.ask(batches[index % BATCHES])
    latencies_ms: list[float] = []
    errors = 0
    for index in range(requests):
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        ok = client.ask(batches[index % BATCHES])
        if ok:
            latencies_ms.append((time.perf_counter() - started) * 1000.0)
        else:
            errors += 1
    return {
        "url": url,
        "count": len(latencies_ms) + errors,
        "errors": errors,
        "p50_ms": round(percentile(latencies_ms, 0.5), 2) if latencies_ms else None,
        "p99_ms": round(percentile(latencies_ms, 0.99), 2) if latencies_ms else None,
        "max_ms": round(max(latencies_ms), 2) if latencies_ms else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inference_load", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--site", default="delft", help="whose sensor data the requests carry")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--max-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not 0 < args.requests <= 100_000 or not 0 < args.rows <= 1024:
        parser.error("--requests must be 1..100000 and --rows 1..1024")
    print(json.dumps(run(args.url, args.site, args.requests, args.rows, args.warmup, args.max_s)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
