"""What the workspace window shows before a project is open: what to do first."""

from __future__ import annotations

from pathlib import Path

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget


class StartPage(QWidget):
    """Open a folder, open an annotation file, open the last project again (when it still
    exists: ``last_project``), read the guide. The window connects the buttons."""

    def __init__(self, last_project: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        title = QLabel(
            "<h2>Open your specimen photos to start</h2>"
            "<p>A folder of photos (with their Descriptron annotation files, if any), "
            "or one Descriptron annotation file.<br>Photos sorted into sub-folders "
            "(e.g. one per taxon): open the parent folder and pick one.</p>"
        )
        title.setAlignment(Qt.AlignCenter)
        title.setWordWrap(True)
        layout.addWidget(title)
        self.open_button = QPushButton("Open a folder of photos…  (Ctrl+O)")
        self.file_button = QPushButton("Open an annotation file…  (Ctrl+Shift+O)")
        self.last_button = QPushButton(f"Open again: {last_project}")
        self.last_button.setVisible(bool(last_project) and Path(last_project).exists())
        self.guide_button = QPushButton("Read the user guide  (F1)")
        for b in (self.open_button, self.file_button, self.last_button, self.guide_button):
            b.setMinimumHeight(34)
            layout.addWidget(b, 0, Qt.AlignHCenter)
        layout.addStretch(2)
