"""Conformance tier fixtures' companion: prints the Autobahn summary lines at the end of the
pytest run (also written to tests/conformance/reports/summary.txt, a CI artifact)."""

from __future__ import annotations

from tests.conformance.autobahn import SUMMARY


def pytest_terminal_summary(terminalreporter) -> None:
    if SUMMARY:
        terminalreporter.section("Autobahn|Testsuite")
        for line in SUMMARY:
            terminalreporter.write_line(line)
