""""Suggest next template": the specimens whose outlines would teach the model most, from the
review that is open (``engine.next_template``), and a button that opens the chosen one in the
Templates panel. Outlining it (or "Add as template" in Review) and Train SAM2-PAL follow."""

from __future__ import annotations

from typing import Any, Callable

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (QDialog, QDialogButtonBox, QLabel, QListView, QListWidget, QListWidgetItem,
                             QVBoxLayout, QWidget)

from descriptron_sam2pal.engine.next_template import SpecimenScores, Suggestion, rank_specimens
from descriptron_sam2pal.jobs.review import ACCEPTED, REJECTED

_SUGGESTION_ROLE = Qt.UserRole
#: What the list is, without promising a gain: on the test-beds measured so far a suggested
#: specimen was no better a second template than a random one (benchmarks/README.md, "Next
#: template"; issue 25 item 5: the GUI says it ranks by uncertainty only until a test-bed shows
#: a gain of at least 1 mIoU over 3 seeds). On the class-agnostic test-bed (session 10, without
#: retraining) the mean gain was +1.1, but -0.8 / +4.2 / 0.0 by seed: one seed, not a pattern.
EXPLANATION = ("Ranked by uncertainty only: the specimens the model is least sure of (lowest review "
               "scores, structures it could not find) come first; specimens whose structures you all "
               "accepted in Review are left out. This shows where the model struggles; "
               "it is no promise that outlining them helps more than outlining any other specimen (on "
               "the test photos measured so far it did not). To add one: open it in Templates, outline "
               "its structures (or use Review's \"Add as template\" on corrected masks), then Train "
               "SAM2-PAL again.")


def specimen_scores(session: Any) -> tuple[list[SpecimenScores], list[str]]:
    """(the scores of each specimen not already fully accepted, the structures) of a ``ReviewSession``.

    What the reviewer decided counts: an accepted structure is certain (score 1: its outline
    is right), a rejected one fully uncertain (as if absent); unreviewed ones keep the
    model's score. A specimen whose structures are all accepted has nothing left to teach."""
    by_target: dict[int, dict] = {}
    for item in session.items:
        entry = by_target.setdefault(id(item.target), {"target": item.target, "scores": {}, "states": []})
        entry["states"].append(item.state)
        if item.state == ACCEPTED:
            score = 1.0
        elif item.state == REJECTED or item.absent:
            score = None
        else:
            score = item.score if item.score is not None else item.predicted_iou
        entry["scores"][item.structure] = score
    specimens = [SpecimenScores(v["target"].image_id, v["target"].path, v["scores"])
                 for v in by_target.values() if any(state != ACCEPTED for state in v["states"])]
    return specimens, session.structure_names()


def reason(suggestion: Suggestion, session: Any | None = None) -> str:
    """Why a specimen is suggested, in one short sentence: how unsure the model is, of what,
    and how much of it the reviewer has accepted already."""
    weak = f" — unsure of {', '.join(suggestion.weakest)}" if suggestion.weakest else ""
    done = ""
    if session is not None:
        states = [i.state for i in session.items if i.target.image_id == suggestion.image_id]
        accepted = sum(1 for st in states if st == ACCEPTED)
        if accepted:
            done = f"; {accepted} of {len(states)} accepted"
    return f"the model is {100 * suggestion.uncertainty:.0f}% unsure{weak}{done}"


class NextTemplateDialog(QDialog):
    """The ranked specimens; "Open in Templates" calls ``open_specimen(suggestion)``."""

    def __init__(self, suggestions: list[Suggestion], open_specimen: Callable[[Suggestion], Any],
                 parent: QWidget | None = None, session: Any | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Suggest next template")
        self.open_specimen = open_specimen
        self.list = QListWidget()
        self.list.setWordWrap(True)  # a long reason wraps onto a second line instead of being cut off
        self.list.setResizeMode(QListView.Adjust)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        for s in suggestions:
            name = str(s.path).replace("\\", "/").rsplit("/", 1)[-1] if s.path else str(s.image_id)
            text = f"{name}: {reason(s, session)}"
            item = QListWidgetItem(text)
            item.setToolTip(text)
            item.setData(_SUGGESTION_ROLE, s)
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)
        explain = QLabel(EXPLANATION if suggestions else
                         "Nothing to suggest: segment some specimens first (or every segmented specimen "
                         "is accepted already).")
        explain.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.open_button = buttons.addButton("Open in Templates", QDialogButtonBox.AcceptRole)
        self.open_button.setEnabled(bool(suggestions))
        buttons.accepted.connect(self._open)
        buttons.rejected.connect(self.reject)
        self.list.itemDoubleClicked.connect(lambda _item: self._open())
        layout = QVBoxLayout(self)
        layout.addWidget(explain)
        layout.addWidget(self.list, 1)
        layout.addWidget(buttons)
        self.resize(560, 340)

    def chosen(self) -> Suggestion | None:
        item = self.list.currentItem()
        return item.data(_SUGGESTION_ROLE) if item is not None else None

    def _open(self) -> None:
        if self.chosen() is not None:
            self.open_specimen(self.chosen())
            self.accept()


def suggestions_for(session: Any, template_ids: list, limit: int = 5) -> list[Suggestion]:
    specimens, structures = specimen_scores(session)
    return rank_specimens(specimens, structures, exclude=template_ids, limit=limit)
