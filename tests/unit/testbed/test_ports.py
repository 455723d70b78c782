"""The testbed's port choice: clusters start in parallel, and no two servers may share a port."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from e2e.testbed import _free_ports

pytestmark = pytest.mark.unit


def test_ports_chosen_in_parallel_threads_never_repeat() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = list(pool.map(lambda _: _free_ports(3), range(64)))
    ports = [port for batch in batches for port in batch]
    assert len(ports) == 192
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port <= 65535 for port in ports)
