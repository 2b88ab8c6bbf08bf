"""The workspace's Help menu: the user guide (with its screenshots, no browser needed), which
plugins loaded and why some did not, and the store's warnings."""

from __future__ import annotations

from pathlib import Path

from PyQt5.QtCore import QUrl
from PyQt5.QtGui import QColor, QImageReader, QTextCursor
from PyQt5.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from descriptron_sam2pal.host import api

#: The user guide next to the sources (a source checkout or an editable install).
USER_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user_guide.md"


def fit_images(document, width: int, folder: Path = USER_GUIDE.parent) -> None:
    """Show the document's images (the guide's screenshots, paths relative to ``folder``) at most
    ``width`` px wide, height to scale."""
    block = document.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            fmt = fragment.charFormat()
            size = (
                QImageReader(str(folder / fmt.toImageFormat().name())).size() if fmt.isImageFormat() else None
            )
            if size is not None and size.width() > width:
                image = fmt.toImageFormat()
                image.setWidth(width)
                cursor = QTextCursor(document)
                cursor.setPosition(fragment.position())
                cursor.setPosition(fragment.position() + fragment.length(), QTextCursor.KeepAnchor)
                cursor.setCharFormat(image)
            it += 1
        block = block.next()


def _close_buttons(dialog: QDialog) -> QDialogButtonBox:
    buttons = QDialogButtonBox(QDialogButtonBox.Close)
    buttons.rejected.connect(dialog.reject)
    return buttons


def user_guide_dialog(parent: QWidget) -> tuple[QDialog, QTextBrowser]:
    """Help > User guide, opened: the dialog and the browser showing the guide."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("SAM2-PAL user guide")
    layout = QVBoxLayout(dialog)
    browser = QTextBrowser()
    browser.setOpenExternalLinks(True)
    if USER_GUIDE.is_file():
        browser.document().setBaseUrl(QUrl.fromLocalFile(str(USER_GUIDE)))
        browser.setSearchPaths([str(USER_GUIDE.parent)])
        browser.setMarkdown(USER_GUIDE.read_text(encoding="utf-8"))
        fit_images(browser.document(), 820)
    else:
        browser.setMarkdown(
            "The user guide is `docs/user_guide.md` in the descriptron-sam2pal "
            "sources; this installation does not include it."
        )
    layout.addWidget(browser)
    layout.addWidget(_close_buttons(dialog))
    dialog.resize(min(900, max(600, parent.width() - 80)), min(760, max(480, parent.height() - 60)))
    dialog.open()
    return dialog, browser


def plugins_dialog(parent: QWidget, results: list[api.PluginLoadResult]) -> QDialog:
    """Help > Plugins, opened: each plugin, loaded or why not (the first failure selected)."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Plugins")
    layout = QVBoxLayout(dialog)
    if not results:
        layout.addWidget(QLabel(f"No plugins found (entry point group '{api.PLUGIN_GROUP}')."))
    table = QTableWidget(len(results), 3)
    table.setHorizontalHeaderLabels(["Plugin", "Status", "Entry point"])
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    table.verticalHeader().hide()
    table.setEditTriggers(QTableWidget.NoEditTriggers)
    details = QPlainTextEdit()
    details.setReadOnly(True)
    for row, res in enumerate(results):
        status = QTableWidgetItem("loaded" if res.ok else f"failed: {res.error}")
        if not res.ok:
            status.setForeground(QColor(190, 30, 30))
        for col, item in enumerate((QTableWidgetItem(res.name), status, QTableWidgetItem(res.target))):
            table.setItem(row, col, item)
    table.currentCellChanged.connect(
        lambda row, *_: details.setPlainText(results[row].details if 0 <= row < len(results) else "")
    )
    layout.addWidget(table)
    layout.addWidget(details)
    layout.addWidget(_close_buttons(dialog))
    dialog.resize(760, 360)
    failed_rows = [i for i, r in enumerate(results) if not r.ok]
    if failed_rows:
        table.setCurrentCell(failed_rows[0], 0)
    dialog.open()
    return dialog


def warnings_dialog(parent: QWidget, warnings: list[str]) -> QDialog:
    """Help > Store warnings, opened."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Store warnings")
    layout = QVBoxLayout(dialog)
    text = QPlainTextEdit("\n".join(warnings))
    text.setReadOnly(True)
    layout.addWidget(text)
    layout.addWidget(_close_buttons(dialog))
    dialog.resize(700, 300)
    dialog.open()
    return dialog
