"""Modal dialogs: choosing a close code to disconnect a connection, confirming it, and help."""

from __future__ import annotations

from typing import Final

from attrs import frozen
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from wsserver.codes import CloseCode

#: Close codes an operator may choose, with what the client does next. The server's API accepts
#: 1000, 1001, 1008, 1011, 1013 and 3000-4999 (1009 describes a client fault, so it is not offered).
CLOSE_CHOICES: Final[tuple[tuple[int, str, str], ...]] = (
    *((int(c), c.meaning, c.advice) for c in CloseCode if c in (CloseCode.NORMAL, CloseCode.GOING_AWAY)),
    (1008, "policy violation", "do not reconnect with the same behaviour"),
    *(
        (int(c), c.meaning, c.advice)
        for c in CloseCode
        if c not in (CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.MESSAGE_TOO_BIG)
    ),
)
DEFAULT_REASON: Final = "disconnected by an operator"


@frozen
class DisconnectChoice:
    connection_id: str
    code: int
    reason: str

    @property
    def meaning(self) -> str:
        return next(m for c, m, _ in CLOSE_CHOICES if c == self.code)

    @property
    def advice(self) -> str:
        return next(a for c, _, a in CLOSE_CHOICES if c == self.code)


class DisconnectScreen(ModalScreen[DisconnectChoice | None]):
    """Pick a close code (Enter) and optionally edit the reason; Esc cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, connection_id: str, user: str | None) -> None:
        super().__init__()
        self.connection_id = connection_id
        self.user = user

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Disconnect [b]{self.connection_id}[/] (user {self.user or '—'}) with close code:")
            yield OptionList(
                *(Option(f"{code}  {meaning}", id=str(code)) for code, meaning, _ in CLOSE_CHOICES), id="codes"
            )
            yield Input(DEFAULT_REASON, placeholder="reason (sent in the close frame)", id="reason", compact=True)
            yield Static("[dim]↑↓ choose · Enter next · Tab reason · Esc cancel[/]")

    def on_mount(self) -> None:
        self.query_one("#codes", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._choose(int(event.option.id or 0))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        codes = self.query_one("#codes", OptionList)
        option = codes.highlighted_option
        if option is not None:
            self._choose(int(option.id or 0))

    def _choose(self, code: int) -> None:
        reason = self.query_one("#reason", Input).value.strip() or DEFAULT_REASON
        self.dismiss(DisconnectChoice(self.connection_id, code, reason))


class ConfirmScreen(ModalScreen[bool]):
    """``y`` (or the button) confirms, ``n``/Esc cancels."""

    BINDINGS = [
        Binding("y", "dismiss(True)", "Yes, disconnect"),
        Binding("n,escape", "dismiss(False)", "No"),
    ]

    def __init__(self, choice: DisconnectChoice) -> None:
        super().__init__()
        self.choice = choice

    def compose(self) -> ComposeResult:
        c = self.choice
        with Vertical(classes="dialog"):
            yield Static(
                f"Close connection [b]{c.connection_id}[/] with [b]{c.code}[/]: {c.meaning}?\n"
                f"The client should: {c.advice}.\nReason: {c.reason}"
            )
            with Horizontal(classes="buttons"):
                yield Button("Disconnect (y)", id="yes", variant="error")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


HELP_TEXT: Final = """\
[b]wsserver admin[/] — live view of a server's internal API, refreshed every interval.

[b]Everywhere[/]
  1 2 3      overview · connections · channels
  /          filter the table (Enter keeps it, Esc clears it)
  s / S      sort by the next column / reverse the order
  r          refresh now
  ?          this help          q   quit

[b]In a table[/]
  ↑ ↓        move              Enter  open details
  d          disconnect the selected connection (choose a close code, confirm with y)

[b]Filter[/] (every term must match; case-insensitive; * is a wildcard)
  bob        user, channel, connection id or remote address containing "bob"
  user:bob   only the user      channel:chat.*   only subscribed channels

[b]Lag[/] is how many events a subscription is behind its channel's head
(head seq − last seq written to the socket). Rows turn [b red]red[/] at the lag
threshold or when a connection's outgoing queue is half full; a queue that
overflows closes the connection with 4009 (it reconnects and loses nothing).
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(HELP_TEXT)
