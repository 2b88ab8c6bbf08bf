"""The review table: one row per (specimen, structure) prediction, its state shown in colour and words."""

from __future__ import annotations

from PyQt5.QtCore import QAbstractTableModel, QModelIndex, Qt
from PyQt5.QtGui import QBrush, QColor, QFont
from PyQt5.QtWidgets import QStyle, QStyledItemDelegate

from descriptron_sam2pal.jobs.review import ACCEPTED, REJECTED, UNREVIEWED, ReviewItem, ReviewSession

#: (background, text) per state: big, obvious, and told apart by the words as well.
STATE_COLORS = {
    UNREVIEWED: ((236, 236, 236), (40, 40, 40)),
    ACCEPTED: ((46, 160, 67), (255, 255, 255)),
    REJECTED: ((207, 52, 68), (255, 255, 255)),
}
STATE_TEXT = {UNREVIEWED: "To review", ACCEPTED: "\u2714 Accepted", REJECTED: "\u2718 Rejected"}
ABSENT_COLOR = (196, 110, 0)

COLUMNS = ("Specimen", "Structure", "Score", "State")



def state_text(item: ReviewItem) -> str:
    text = STATE_TEXT[item.state]
    if item.corrected:
        text += " (fixed)"
    if item.written:
        text += " \u00b7 in project"
    return text


def score_text(item: ReviewItem) -> str:
    if item.absent:
        return "absent"
    return "\u2013" if item.score is None else f"{item.score:.2f}"


class StateDelegate(QStyledItemDelegate):
    """Paints the State cell in its state colour even on the selected row."""

    def initStyleOption(self, option, index) -> None:
        super().initStyleOption(option, index)
        option.state &= ~QStyle.State_Selected


def _sort_key(column: int):
    """The key of a column for sorting; ties keep the worst-first order."""
    states = {UNREVIEWED: 0, ACCEPTED: 1, REJECTED: 2}
    return {
        0: lambda it: it.target.label.lower(),
        1: lambda it: it.structure.lower(),
        2: lambda it: -1.0 if it.absent or it.score is None else it.score,
        3: lambda it: states[it.state],
    }[column]


class ReviewTableModel(QAbstractTableModel):
    """The session's items under the current filters, worst first or sorted by a column (click a
    header; rows rebuilt on every change). Filters: a state (``filter``) and a structure
    (``structure``, None for all)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.session: ReviewSession | None = None
        self.filter = "all"
        self.structure: str | None = None
        self.sort_column = -1  # -1: worst first
        self.sort_order = Qt.AscendingOrder
        self.rows: list[ReviewItem] = []

    def set_session(self, session: ReviewSession | None) -> None:
        self.session = session
        self.refresh()

    def set_filter(self, name: str) -> None:
        self.filter = name
        self.refresh()

    def set_structure(self, name: str | None) -> None:
        self.structure = name or None
        self.refresh()

    def sort(self, column: int, order=Qt.AscendingOrder) -> None:
        """Sort by ``column`` (-1: worst first, the review order)."""
        self.sort_column, self.sort_order = column, order
        self.refresh()

    def refresh(self) -> None:
        self.beginResetModel()
        rows = self.session.visible(self.filter) if self.session is not None else []
        if self.structure is not None:
            rows = [it for it in rows if it.structure == self.structure]
        if 0 <= self.sort_column < len(COLUMNS):
            rows = sorted(
                rows, key=_sort_key(self.sort_column), reverse=self.sort_order == Qt.DescendingOrder
            )
        self.rows = rows
        self.endResetModel()

    def row_of(self, item: ReviewItem) -> int:
        for r, it in enumerate(self.rows):
            if it is item:
                return r
        return -1

    def rowCount(self, parent: QModelIndex | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Horizontal and role == Qt.ToolTipRole:
            return ("Specimen photo", "Structure predicted on it",
                    "Score 0..1 (estimated IoU from SAM2's mask stability, its predicted IoU and the "
                    "agreement with the other specimens' outlines): low = check it",
                    "Your decision")[section]
        if orientation == Qt.Vertical and role == Qt.DisplayRole:
            return str(section + 1)
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        item, col = self.rows[index.row()], index.column()
        bg, fg = STATE_COLORS[item.state]
        if role == Qt.DisplayRole:
            return (item.target.label, item.structure, score_text(item), state_text(item))[col]
        if role == Qt.BackgroundRole:
            if col == 3:
                return QBrush(QColor(*bg))
            if item.state != UNREVIEWED:  # a light tint of the state across the row
                return QBrush(QColor(*bg, 45))
            return None
        if role == Qt.ForegroundRole:
            if col == 3:
                return QBrush(QColor(*fg))
            if col == 2 and item.absent:
                return QBrush(QColor(*ABSENT_COLOR))
            return None
        if role == Qt.FontRole and (col == 3 or (col == 2 and item.absent)):
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.TextAlignmentRole and col == 2:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        if role == Qt.ToolTipRole:
            return item_tooltip(item)
        return None


def item_tooltip(item: ReviewItem) -> str:
    def fmt(v):
        return "\u2013" if v is None else f"{v:.3f}"
    lines = [item.label,
             "Predicted ABSENT: accept (A) to confirm it is missing on this specimen" if item.absent and
             not item.corrected else f"Score (estimated IoU): {fmt(item.score)}",
             f"SAM2 object score: {fmt(item.object_score)}   predicted IoU: {fmt(item.predicted_iou)}",
             f"State: {state_text(item)}"]
    if item.corrected:
        lines.append(f"Fixed with {len(item.points)} point(s)")
    if item.target.path:
        lines.append(item.target.path)
    return "\n".join(lines)
