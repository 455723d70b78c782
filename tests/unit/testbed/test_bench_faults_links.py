"""The fault benchmark starts each script's links as its first rows set them."""

import pytest

from e2e import fault_script
from e2e.bench_faults import starting_links

pytestmark = pytest.mark.unit

SCRIPT = """at_s,site,rtt_ms,jitter_ms,loss_pct,state
0,delft,40,5,1,up
0,ghent,,,,partition
0,delft,90,0,0,up
5,eindhoven,30,2,0,up
"""


def test_a_sites_first_row_at_zero_is_its_starting_link() -> None:
    rows = fault_script.parse(SCRIPT, ["delft", "eindhoven", "ghent"])
    # ghent starts partitioned (the script's own row does it), eindhoven is set only later.
    assert starting_links(rows) == {"delft": (40.0, 5.0, 1.0)}
