"""The latency model: an estimate of the p99 time to serve a request from a data site.

p99 = RTT + payload transfer at the link's bandwidth + p99 sojourn at the shard.

The sojourn is that of an M/M/1 queue, ln(100) * service / (1 - request_load), where
request_load is the shard's own offered load (its request rate over its service rate), and the
service time is stretched by interference from the other work on the cluster:
service * (1 + interference * u), with u the cluster's dominant utilisation once the shard has
landed. Replace the model by implementing `LatencyModel`, e.g. with measured service times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Past this load the M/M/1 estimate explodes; cap it so that estimates stay finite.
MAX_LOAD = 0.95


class LatencyModel(Protocol):
    def p99_ms(
        self,
        rtt_ms: FloatArray,
        bandwidth_mbps: FloatArray,
        request_kb: FloatArray,
        service_ms: FloatArray,
        utilisation: FloatArray,
    ) -> FloatArray:
        """Broadcast the inputs and return the estimated p99 in milliseconds."""
        ...


@dataclass(frozen=True)
class QueueingLatencyModel:
    """RTT + transfer + M/M/1 p99 sojourn with interference (see the module docstring)."""

    percentile: float = 0.99
    request_load: float = 0.5
    interference: float = 1.0

    def transfer_ms(self, request_kb: FloatArray, bandwidth_mbps: FloatArray) -> FloatArray:
        # kilobytes * 8 = kilobits, and a kilobit at 1 Mbps takes 1 ms.
        result: FloatArray = request_kb * 8.0 / np.maximum(bandwidth_mbps, 1e-9)
        return result

    def sojourn_ms(self, service_ms: FloatArray, utilisation: FloatArray) -> FloatArray:
        tail = -math.log(1.0 - self.percentile)
        headroom = 1.0 - min(max(self.request_load, 0.0), MAX_LOAD)
        stretched = service_ms * (1.0 + self.interference * np.clip(utilisation, 0.0, 1.0))
        result: FloatArray = tail * stretched / headroom
        return result

    def p99_ms(
        self,
        rtt_ms: FloatArray,
        bandwidth_mbps: FloatArray,
        request_kb: FloatArray,
        service_ms: FloatArray,
        utilisation: FloatArray,
    ) -> FloatArray:
        result: FloatArray = (
            rtt_ms
            + self.transfer_ms(request_kb, bandwidth_mbps)
            + self.sojourn_ms(service_ms, utilisation)
        )
        return result
