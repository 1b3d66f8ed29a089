"""Trio mode for the store contract suite's directory."""

from pytest_trio.enable_trio_mode import pytest_fixture_setup  # noqa: F401 - trio fixtures here (see tests/conftest.py)
