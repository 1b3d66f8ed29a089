"""Exceptions the SDK raises to the application, all from ``Client.publish``: the connection
problems themselves are never raised, they are events (``Reconnecting``, ``Closed``)."""

from __future__ import annotations


class ClientError(Exception):
    """Base class of the SDK's exceptions."""


class ClientClosed(ClientError):
    """The client closed before the operation completed."""


class PublishRefused(ClientError):
    """The server refused a publish for good (e.g. `forbidden`); ``code`` is the error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class MessageTooBig(ClientError):
    """The frame exceeds the server's ``maxMessageSize``; it is not sent (and never retried)."""
