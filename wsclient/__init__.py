"""wsclient: the reference Python (Trio) client SDK for wsserver — reconnects, resubscribes
from each channel's position, dedupes and orders events, and publishes exactly once.

See docs/sdk-python.md.
"""

from wsclient.backoff import Backoff as Backoff
from wsclient.client import Client as Client
from wsclient.client import ClientStats as ClientStats
from wsclient.client import TokenProvider as TokenProvider
from wsclient.client import open_client as open_client
from wsclient.codes import CLOSE_ADVICE as CLOSE_ADVICE
from wsclient.codes import Reconnect as Reconnect
from wsclient.codes import advice_for as advice_for
from wsclient.errors import ClientClosed as ClientClosed
from wsclient.errors import ClientError as ClientError
from wsclient.errors import MessageTooBig as MessageTooBig
from wsclient.errors import PublishRefused as PublishRefused
from wsclient.events import ChannelEvent as ChannelEvent
from wsclient.events import ClientEvent as ClientEvent
from wsclient.events import Closed as Closed
from wsclient.events import Connected as Connected
from wsclient.events import Connecting as Connecting
from wsclient.events import ConnectionState as ConnectionState
from wsclient.events import Live as Live
from wsclient.events import Reconnecting as Reconnecting
from wsclient.events import Reset as Reset
from wsclient.events import ServerError as ServerError
from wsclient.events import Snapshot as Snapshot
from wsclient.events import Subscribed as Subscribed
from wsclient.events import TokenReason as TokenReason
from wsclient.events import Unsubscribed as Unsubscribed
from wsclient.outbox import PublishResult as PublishResult
from wsclient.positions import MemoryPositionStore as MemoryPositionStore
from wsclient.positions import Position as Position
from wsclient.positions import PositionStore as PositionStore
