"""The end-to-end scenarios of issue 5 as pytest tests, one per scenario (= one per boot).

All selected scenarios boot once, together (in parallel, each in its own empty network
namespace), the first time a test here needs them; each test then asserts on its own boot and
lists every failed check. Skipped only where QEMU cannot run at all (not root, no
qemu-system-x86_64, no unshare) or, for a platform still being written, while the built image's
``cl-metadata providers`` lacks its id. Run alone: ``tests/e2e/run``.
"""

from __future__ import annotations

import contextlib
from typing import Dict

import pytest

from e2e_runner import SUMMARY_KEY, Outcome, run_scenarios
from e2e_catalog import SCENARIOS

pytestmark = [pytest.mark.qemu, pytest.mark.root]


@pytest.fixture(scope="module")
def outcomes(request) -> Dict[str, Outcome]:
    selected = [item.callspec.params["scenario"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")]
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    started = []

    def log(line: str) -> None:  # progress as it happens: an image build takes minutes
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(("" if started else "\n") + f"[e2e] {line}", flush=True)
        started.append(line)

    found = run_scenarios(selected or None, log=log)
    setattr(request.config, SUMMARY_KEY, [line for o in found.values() for line in o.lines()])
    return found


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_scenario(outcomes, scenario):
    outcome = outcomes[scenario]
    if outcome.status == "skip":
        pytest.skip(outcome.reason)
    if outcome.status != "pass":
        pytest.fail("\n".join(outcome.lines()), pytrace=False)
