"""Which rows the Review panel's table shows and which one is selected: the state and structure
filters, the sort order, the selected row, moving to the next or previous one, and where a review
continues (the item the reviewer stopped at).

It changes when the way a reviewer moves through the predictions changes; what an action does to
the selected item, and how it is shown, stay in :mod:`descriptron_sam2pal.gui.review_panel`.
"""

from __future__ import annotations

from typing import Any, Callable

from PyQt5.QtCore import QModelIndex, Qt

from descriptron_sam2pal.gui.review_layout import ALL_STRUCTURES, FILTER_CHOICES
from descriptron_sam2pal.jobs.review import ReviewItem, ReviewSession


class ReviewRows:
    """The rows of ``table`` (a view of ``model``, a ``ReviewTableModel``) that ``filter_combo`` and
    ``structure_combo`` let through, and the selection among them. ``show_current(force=False)``
    shows the selected item (it does nothing when that item is shown already and ``force`` is
    False); ``update_actions()`` updates the buttons for it."""

    def __init__(
        self,
        table: Any,
        model: Any,
        filter_combo: Any,
        structure_combo: Any,
        show_current: Callable[..., None],
        update_actions: Callable[[], None],
    ) -> None:
        self.table, self.model = table, model
        self.filter_combo, self.structure_combo = filter_combo, structure_combo
        self.show_current, self.update_actions = show_current, update_actions
        filter_combo.currentIndexChanged.connect(self._on_filter_changed)
        structure_combo.currentIndexChanged.connect(self._on_structure_changed)
        table.selectionModel().currentRowChanged.connect(self._on_current_changed)

    # ------------------------------------------------------------------ the selection
    def current_item(self) -> ReviewItem | None:
        row = self.table.currentIndex().row()
        return self.model.rows[row] if 0 <= row < len(self.model.rows) else None

    def current_row(self) -> int:
        return self.table.currentIndex().row()

    def select(self, item: ReviewItem) -> bool:
        """Select ``item`` if the filter shows it."""
        row = self.model.row_of(item)
        if row >= 0:
            self.select_row(row)
        return row >= 0

    def select_row(self, row: int) -> None:
        """Select ``row`` (clamped to the rows shown; none when there are none) and show it."""
        n = len(self.model.rows)
        if n == 0:
            self.table.setCurrentIndex(QModelIndex())
            self.show_current()
            return
        row = min(max(row, 0), n - 1)
        index = self.model.index(row, 0)
        self.table.setCurrentIndex(index)
        self.table.scrollTo(index)
        self.show_current()

    def next_item(self) -> None:
        self.select_row(self.current_row() + 1)

    def previous_item(self) -> None:
        self.select_row(max(self.current_row() - 1, 0))

    def refresh_after(self, row: int, item: ReviewItem | None, advance: bool) -> None:
        """Rows are rebuilt: select ``item`` (the one after it when ``advance``), else the same
        ``row`` (``item`` None, or it left the view)."""
        self.model.refresh()
        new_row = self.model.row_of(item) if item is not None else -1
        if new_row < 0:
            self.select_row(row)
        else:
            self.select_row(new_row + 1 if advance and new_row + 1 < len(self.model.rows) else new_row)
        self.show_current(force=True)
        self.update_actions()

    def show_session(self, session: ReviewSession | None) -> None:
        """Rows of ``session`` (every structure), selecting where the reviewer stopped (Continue),
        else the first row."""
        self.structure_combo.blockSignals(True)
        self.structure_combo.clear()
        self.structure_combo.addItem(ALL_STRUCTURES)
        for name in session.structure_names() if session is not None else []:
            self.structure_combo.addItem(name)
        self.structure_combo.blockSignals(False)
        self.model.structure = None
        self.model.set_session(session)
        resume = session.resume_item() if session is not None else None
        if resume is None or not self.select(resume):
            self.select_row(0)

    def _on_current_changed(self, *_args) -> None:
        self.show_current()
        self.update_actions()

    # ------------------------------------------------------------------ sorting and filtering
    def sort_by(self, column: int, order=Qt.AscendingOrder) -> None:
        """Sort the table by a column (0 specimen, 1 structure, 2 score, 3 state); -1: worst first."""
        item = self.current_item()
        header = self.table.horizontalHeader()
        if header.sortIndicatorSection() != column or header.sortIndicatorOrder() != order:
            header.blockSignals(True)
            header.setSortIndicator(column, order)
            header.blockSignals(False)
        self.model.sort(column, order)
        self._keep_selection(item)

    def set_filter(self, name: str) -> None:
        """ "all", "unreviewed", "accepted" or "rejected"."""
        for i, (_, value) in enumerate(FILTER_CHOICES):
            if value == name:
                self.filter_combo.setCurrentIndex(i)
                return
        raise ValueError(f"unknown filter {name!r}")

    def set_structure_filter(self, name: str | None) -> None:
        """Only this structure's rows (None: all structures)."""
        index = self.structure_combo.findText(name) if name else 0
        if index < 0:
            raise ValueError(f"no structure {name!r} in this review")
        self.structure_combo.setCurrentIndex(index)

    def _on_filter_changed(self, _index: int) -> None:
        item = self.current_item()
        self.model.set_filter(self.filter_combo.currentData())
        self._keep_selection(item, focus=True)

    def _on_structure_changed(self, index: int) -> None:
        item = self.current_item()
        self.model.set_structure(None if index <= 0 else self.structure_combo.itemText(index))
        self._keep_selection(item, focus=True)

    def _keep_selection(self, item: ReviewItem | None, focus: bool = False) -> None:
        """The rows changed: keep ``item`` selected if it is still shown, else the first row;
        ``focus``: the table takes the focus (a filter was chosen: the review keys work again at once)."""
        if item is None or not self.select(item):
            self.select_row(0)
        if focus:
            self.table.setFocus()
        self.show_current()
        self.update_actions()
