"""`KeyedTable`: a DataTable updated in place by row key — changed cells only, rows added and
removed by key, reordered without rebuilding, and the cursor kept on the same row key."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from admin_tui.models import Column

Cells = tuple[Text, ...]


def _look(cells: Cells) -> tuple[tuple[str, str, str], ...]:
    # rich's Text equality ignores the base style; a row turning red must count as a change.
    return tuple((c.plain, str(c.style), c.justify or "") for c in cells)


class KeyedTable(DataTable):
    """Rows are ``(key, cells)``; the first column always holds the key's text (it drives ordering)."""

    DEFAULT_CSS = """
    KeyedTable { height: 1fr; }
    """

    def __init__(self, columns: Sequence[Column], *, id: str | None = None, widths: dict[str, int] | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._columns = tuple(columns)
        self._widths = widths or {}
        self._rendered: dict[str, Cells] = {}

    def on_mount(self) -> None:
        for column in self._columns:
            self.add_column(column.label, key=column.key, width=self._widths.get(column.key))

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except RowDoesNotExist:
            return None

    def keys_in_order(self) -> list[str]:
        return [str(row.key.value) for row in self.ordered_rows]

    def sync(self, rows: Sequence[tuple[str, Cells]]) -> None:
        """Makes the table show ``rows`` in this order, touching only what changed."""
        selected = self.selected_key
        old_index = self.cursor_row
        wanted = dict(rows)
        for key in [k for k in self._rendered if k not in wanted]:
            self.remove_row(key)
            del self._rendered[key]
        for key, cells in rows:
            before = self._rendered.get(key)
            if before is None:
                self.add_row(*cells, key=key)
            elif _look(before) != _look(cells):
                for column, old, new in zip(self._columns, _look(before), cells, strict=True):
                    if old != _look((new,))[0]:
                        self.update_cell(key, column.key, new)
            self._rendered[key] = cells
        order = {key: i for i, (key, _) in enumerate(rows)}
        if self.keys_in_order() != list(order):
            self.sort(self._columns[0].key, key=lambda cell: order[str(cell)])
        if selected is not None and selected in order:
            self.move_cursor(row=order[selected], animate=False)
        elif self.row_count:
            self.move_cursor(row=min(old_index, self.row_count - 1), animate=False)

    def select_key(self, key: str) -> bool:
        try:
            self.move_cursor(row=self.get_row_index(key), animate=False)
        except RowDoesNotExist:
            return False
        return True
