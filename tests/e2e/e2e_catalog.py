"""Every end-to-end scenario, in the order they boot and are listed: issue 5's and issue 6's
(e2e_scenarios.py), then issue 11's drop-in boots (e2e_scenarios_dropin.py), then issue 12's
network boot (e2e_scenarios_network.py), issue 15's platform boot (e2e_scenarios_platforms.py),
issue 13's user-data boot (e2e_scenarios_userdata.py) and its watch boots
(e2e_scenarios_watch.py)."""

from __future__ import annotations

from typing import Dict, List

import e2e_scenarios
import e2e_scenarios_dropin
import e2e_scenarios_network
import e2e_scenarios_platforms
import e2e_scenarios_userdata
import e2e_scenarios_watch
from e2e_scenarios import Scenario

SCENARIOS: List[Scenario] = [*e2e_scenarios.SCENARIOS, *e2e_scenarios_dropin.SCENARIOS,
                             *e2e_scenarios_network.SCENARIOS,
                             *e2e_scenarios_platforms.SCENARIOS,
                             *e2e_scenarios_userdata.SCENARIOS,
                             *e2e_scenarios_watch.SCENARIOS]


def by_name() -> Dict[str, Scenario]:
    return {s.name: s for s in SCENARIOS}
