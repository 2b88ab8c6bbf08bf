"""The workspace's Images panel: the open project's photos with their annotation counts, a
filter, and a summary that names the sub-folders of photos not opened."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from descriptron_sam2pal.gui.project_folder import photos

_RECORD_ROLE = Qt.UserRole


class ImageListPanel(QWidget):
    """One row per image record, in the store's order. ``chosen(row)`` when the user picks a row
    (not when the window selects one quietly). ``left_out``: (sub-folder, photos) not opened."""

    chosen = pyqtSignal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.records: list = []
        self.left_out: list[tuple[Path, int]] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter images")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.apply_filter)
        self.image_list = QListWidget()
        self.image_list.setUniformItemSizes(True)
        self.image_list.currentItemChanged.connect(self._on_current)
        self.list_summary = QLabel("No images")
        self.list_summary.setWordWrap(True)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.image_list, 1)
        layout.addWidget(self.list_summary)

    def _on_current(self, item: QListWidgetItem | None, _previous=None) -> None:
        if item is not None:
            self.chosen.emit(self.image_list.row(item))

    def fill(self, records: list, annotations: Callable[[object], int]) -> None:
        """List ``records``; ``annotations(record)`` counts each one's annotations."""
        self.records = records
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for rec in records:
            item = QListWidgetItem()
            item.setData(_RECORD_ROLE, rec.id)
            self.image_list.addItem(item)
        self.image_list.blockSignals(False)
        self.refresh_counts(annotations)
        self.apply_filter(self.filter_edit.text())

    def refresh_counts(self, annotations: Callable[[object], int]) -> None:
        for row, rec in enumerate(self.records):
            item = self.image_list.item(row)
            n = annotations(rec)
            item.setText(f"{rec.file_name}  ({n})")
            if rec.path is None:
                item.setForeground(QColor(150, 150, 150))
                item.setToolTip(f"{rec.file_name}: image file not found; {n} annotations")
            else:
                item.setToolTip(f"{rec.path}\n{n} annotations")

    def apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        shown = 0
        for row, rec in enumerate(self.records):
            hide = bool(needle) and needle not in rec.file_name.lower()
            self.image_list.item(row).setHidden(hide)
            shown += not hide
        total = len(self.records)
        text = f"{total} images" if shown == total else f"{shown} of {total} images"
        left_out = self.left_out
        if left_out:  # the user chose this folder's own photos: say what else is there
            text += f"\n+ {photos(sum(n for _, n in left_out))} in sub-folders not opened: " + ", ".join(
                sub.name for sub, _ in left_out
            )
        self.list_summary.setText(text)
        self.list_summary.setToolTip("Open a sub-folder with File > Open folder" if left_out else "")

    def step(self, delta: int) -> None:
        """Select the next (``delta`` > 0) or previous shown row."""
        rows = [r for r in range(self.image_list.count()) if not self.image_list.item(r).isHidden()]
        if not rows:
            return
        cur = self.image_list.currentRow()
        later = [r for r in rows if (r > cur if delta > 0 else r < cur)]
        if later:
            self.image_list.setCurrentRow(later[0] if delta > 0 else later[-1])

    def select_quietly(self, row: int) -> None:
        """Select and show ``row`` without emitting ``chosen`` (the window already switches)."""
        item = self.image_list.item(row)
        if self.image_list.currentRow() != row:
            self.image_list.blockSignals(True)
            self.image_list.setCurrentItem(item)
            self.image_list.blockSignals(False)
            self.image_list.scrollToItem(item)
