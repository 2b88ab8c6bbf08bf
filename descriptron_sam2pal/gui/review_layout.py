"""The Review panel's widgets, built in named sections: the filter row, the table and the action
buttons (the photo is ``gui.review_viewer``, the resume bar ``gui.resume_bar``). Each builder
puts its widgets on the panel (``panel.filter_combo``, ``panel.table``, ``panel.accept_button``,
...) and connects them to the panel's public actions; the panel wires the rest (its own slots).
The behaviour is the panel's."""

from __future__ import annotations

from typing import Any

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
)

from descriptron_sam2pal.gui.review_table import STATE_COLORS, ReviewTableModel, StateDelegate
from descriptron_sam2pal.jobs.review import ACCEPTED, REJECTED, UNREVIEWED

FILTER_CHOICES = (("All", "all"), ("Unreviewed", UNREVIEWED), ("Accepted", ACCEPTED), ("Rejected", REJECTED))
ALL_STRUCTURES = "All structures"


def build_filters(panel: Any) -> QGridLayout:
    """Show: state and structure filters, Worst first, the counts, Open predictions."""
    panel.open_button = QPushButton("Open predictions\u2026")
    panel.open_button.setToolTip(
        "Open the predictions file written by 'sam2pal propagate' "
        "(a saved review of it continues where you left off)"
    )
    panel.open_button.setMinimumWidth(48)
    panel.filter_combo = QComboBox()
    for text, name in FILTER_CHOICES:
        panel.filter_combo.addItem(text, name)
    panel.filter_combo.setToolTip("Show all predictions, or only those still to review, accepted or rejected")
    panel.structure_combo = QComboBox()
    panel.structure_combo.addItem(ALL_STRUCTURES)
    panel.structure_combo.setToolTip("Show every structure, or only one")
    panel.worst_first_button = QPushButton("Worst first")
    panel.worst_first_button.setToolTip(
        "Back to the review order: predicted absent, then lowest Score (click a column header to sort by it)"
    )
    panel.worst_first_button.clicked.connect(lambda: panel.rows.sort_by(-1))
    panel.counts_label = QLabel("No predictions to review")
    counts_font = panel.counts_label.font()
    counts_font.setBold(True)
    panel.counts_label.setFont(counts_font)
    panel.counts_label.setWordWrap(True)
    top = QGridLayout()
    top.addWidget(QLabel("Show:"), 0, 0)
    top.addWidget(panel.filter_combo, 0, 1)
    top.addWidget(panel.structure_combo, 0, 2)
    top.addWidget(panel.worst_first_button, 0, 3)
    top.addWidget(panel.counts_label, 1, 0, 1, 3)
    top.addWidget(panel.open_button, 1, 3)
    top.setColumnStretch(2, 1)
    return top


def build_table(panel: Any) -> None:
    """The table of predictions, worst first, sortable by any column."""
    panel.model = ReviewTableModel(panel)
    panel.table = QTableView()
    panel.table.setModel(panel.model)
    panel.table.setSelectionBehavior(QAbstractItemView.SelectRows)
    panel.table.setSelectionMode(QAbstractItemView.SingleSelection)
    panel.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    panel.table.setWordWrap(False)
    panel.table.setItemDelegateForColumn(3, StateDelegate(panel.table))
    panel.table.verticalHeader().setDefaultSectionSize(panel.table.fontMetrics().height() + 10)
    header = panel.table.horizontalHeader()
    header.setSectionResizeMode(0, QHeaderView.Stretch)
    for col in (1, 2, 3):
        header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
    panel.table.setToolTip(
        "Worst first (click a header to sort by it). A accept, R reject, "
        "\u2191/\u2193 previous/next, Ctrl+Z undo"
    )
    header.setSectionsClickable(True)
    header.setSortIndicatorShown(True)
    header.setSortIndicator(-1, Qt.AscendingOrder)
    header.sortIndicatorChanged.connect(lambda col, order: panel.rows.sort_by(col, order))


def build_buttons(panel: Any) -> QGridLayout:
    """Accept, Reject, Fix, Undo, the whole specimen, Add as template, Write back."""

    def button(text: str, tip: str, slot, color: tuple | None = None) -> QPushButton:
        b = QPushButton(text)
        b.setToolTip(tip)
        b.clicked.connect(slot)
        b.setFocusPolicy(Qt.NoFocus)  # keys keep going to the table
        b.setMinimumWidth(48)  # may shrink (clipped) when the panel shares a narrow dock with others
        if color is not None:
            b.setStyleSheet(
                f"QPushButton {{ background: rgb{color}; color: white; font-weight: bold; "
                f"padding: 6px 14px; }} QPushButton:disabled {{ background: rgb(190,190,190); }}"
            )
        return b

    panel.accept_button = button(
        "Accept  (A)",
        "Accept this structure's outline (key A), then go to the next",
        panel.accept_current,
        STATE_COLORS[ACCEPTED][0],
    )
    panel.reject_button = button(
        "Reject  (R)",
        "Reject this outline: it will not be written (key R)",
        panel.reject_current,
        STATE_COLORS[REJECTED][0],
    )
    panel.fix_button = button("Fix  (F)", "", lambda on: panel.set_fix_mode(on))
    panel.fix_button.setCheckable(True)
    panel.undo_button = button("Undo  (Ctrl+Z)", "Undo the last accept, reject or fix", panel.undo)
    panel.accept_specimen_button = button(
        "Accept specimen  (Shift+A)",
        "Accept every structure of this specimen you have not reviewed yet",
        panel.accept_specimen,
    )
    panel.reject_specimen_button = button(
        "Reject specimen  (Shift+R)",
        "Reject every structure of this specimen you have not reviewed yet (e.g. a bad photo)",
        panel.reject_specimen,
    )
    panel.template_button = button(
        "Add as template",
        "Use this specimen, with its outlines that are not rejected, as another template for training",
        panel.add_as_template,
    )
    panel.write_button = button(
        "Write back\u2026",
        "Put the ACCEPTED outlines into the Descriptron project (asks first); "
        "rejected and unreviewed ones are never written",
        panel.write_back,
    )
    grid = QGridLayout()
    if panel.central:  # a narrow panel: three buttons a row
        panel.accept_specimen_button.setText("Accept all  (\u21e7A)")
        panel.reject_specimen_button.setText("Reject all  (\u21e7R)")
        order = [
            panel.accept_button,
            panel.reject_button,
            panel.fix_button,
            panel.accept_specimen_button,
            panel.reject_specimen_button,
            panel.undo_button,
            panel.template_button,
            panel.write_button,
        ]
    else:
        order = [
            panel.accept_button,
            panel.reject_button,
            panel.fix_button,
            panel.undo_button,
            panel.accept_specimen_button,
            panel.reject_specimen_button,
            panel.template_button,
            panel.write_button,
        ]
    columns = 3 if panel.central else 4
    for i, b in enumerate(order):
        grid.addWidget(b, i // columns, i % columns)
    return grid
