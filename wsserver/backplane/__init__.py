"""Backplanes: how a node learns of events appended by other nodes (none in embedded mode)."""
