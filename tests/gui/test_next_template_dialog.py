"""The "Suggest next template" dialog says what it ranks by and promises no gain (issue 25 item 5)."""

from __future__ import annotations

from PyQt5.QtWidgets import QLabel

from descriptron_sam2pal.engine.next_template import Suggestion
from descriptron_sam2pal.gui.next_template_dialog import NextTemplateDialog


def _texts(dialog) -> str:
    return " ".join(label.text() for label in dialog.findChildren(QLabel))


def test_the_dialog_ranks_by_uncertainty_without_promising_a_gain(qtbot):
    opened = []
    suggestions = [
        Suggestion("a", "/photos/a.png", 0.8, ("eyes",)),
        Suggestion("b", "/photos/b.png", 0.3, ()),
    ]
    dialog = NextTemplateDialog(suggestions, opened.append)
    qtbot.addWidget(dialog)
    text = _texts(dialog)
    assert "uncertainty only" in text and "no promise" in text
    assert "teaches it most" not in text
    assert dialog.list.item(0).text() == "a.png: the model is 80% unsure \u2014 unsure of eyes"
    dialog.open_button.click()
    assert opened == [suggestions[0]]


def test_without_suggestions_it_says_to_segment_first(qtbot):
    dialog = NextTemplateDialog([], lambda s: None)
    qtbot.addWidget(dialog)
    assert "segment some specimens first" in _texts(dialog) and not dialog.open_button.isEnabled()
