"""The one-minute soak (slow tier): ≥ 50 SDK clients through the chaos proxy, a disruption every
few seconds each, ≥ 2,000 HTTP events while the clients publish; nothing lost, nothing twice."""

from __future__ import annotations

import pytest

from tests.proving_ground.soak import SERVER_ENV, SoakConfig, format_report, run_soak
from tests.support import ServerProcess


@pytest.fixture
def soak_server(tmp_path):
    """A server for the soak (which cuts clients mid-handshake, among other things)."""
    with ServerProcess(tmp_path / "data", env=SERVER_ENV) as server:
        yield server


@pytest.mark.slow
async def test_soak(soak_server, capsys):
    report = await run_soak(soak_server, SoakConfig(), log=lambda line: None)
    with capsys.disabled():
        print("\n" + format_report(report))
    assert report.clients >= 50 and report.events_published >= 2000
    assert report.disruptions >= report.clients * 5  # a fault every few seconds per client
    assert report.losses == 0 and report.duplicates == 0 and report.out_of_order == 0
    assert report.deliveries == report.deliveries_expected
    assert report.publishes_stored == report.client_publishes and report.publishes_duplicated == 0
    assert report.connections_after == 0 and report.subscriptions_after == 0
    assert report.sockets_after == 0  # the server let go of every TCP connection, not just the sessions
    assert report.passed
