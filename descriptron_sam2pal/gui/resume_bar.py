"""The Review panel's resume bar: when a project is opened and nothing is being reviewed, the
project's newest saved review (``<project>/sam2pal_runs/*/review.json``) is offered ("Continue"),
once per project and review ("Not now" hides it until another project or review comes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PyQt5.QtCore import pyqtSignal
from PyQt5.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from descriptron_sam2pal.jobs.review_files import latest_review, review_summary


class ResumeBar(QWidget):
    """A yellow bar: what the offered review holds, "Continue" and "Not now".

    Signal: ``continue_requested(path)`` (the review file) when "Continue" is pressed."""

    continue_requested = pyqtSignal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resume")
        self.setStyleSheet("QWidget#resume { background: rgb(255, 243, 205); border-radius: 4px; }")
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 4, 6, 4)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Open this review with every decision you made")
        self.continue_button.clicked.connect(self._continue)
        self.dismiss_button = QPushButton("Not now")
        self.dismiss_button.clicked.connect(self.hide)
        row.addWidget(self.label, 1)
        row.addWidget(self.continue_button)
        row.addWidget(self.dismiss_button)
        self._offered: Path | None = None  # the review offered
        self._offered_for: tuple | None = None  # (project, review) it was offered for
        self.hide()

    def offer_for(self, store: Any) -> None:
        """Offer the newest saved review of ``store``'s project (hidden when it has none)."""
        latest = latest_review(getattr(store, "path", None)) if store is not None else None
        if latest is None:
            self.hide()
            self._offered = None
            return
        if (id(store), latest) == self._offered_for:
            return  # offered for this project already (maybe dismissed): edits do not offer it again
        self._offered_for = (id(store), latest)
        info = review_summary(latest)
        if not info:
            return
        self._offered = latest
        saved = (info.get("saved") or "").replace("T", " ")[:16]
        self.label.setText(
            f"<b>Continue your review?</b> {latest.parent.name}: {info['reviewed']} of {info['total']} "
            f"reviewed ({info['accepted']} accepted, {info['rejected']} rejected)"
            + (f", saved {saved}" if saved else "")
        )
        self.label.setToolTip(str(latest))
        self.show()

    def offered(self) -> Path | None:
        """The review the bar offers (None when it offers nothing or is hidden)."""
        return self._offered if not self.isHidden() else None

    def offered_path(self) -> Path | None:
        """The review last offered, shown or not."""
        return self._offered

    def _continue(self) -> None:
        if self._offered is not None:
            self.continue_requested.emit(self._offered)
