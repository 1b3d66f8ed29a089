"""The server under the proving ground's cruelty: a client that resets mid-handshake must cost
the server that one connection, nothing more."""

from __future__ import annotations


from tests.proving_ground.handshake import reset_during_handshake


def test_server_survives_resets_during_the_handshake(server):
    assert reset_during_handshake(server)
