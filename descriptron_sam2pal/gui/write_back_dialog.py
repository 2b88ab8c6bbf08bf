"""The Review panel's Write back, with its dialogs: a refusal of the checks (``jobs.write_back``:
the same as ``propagate --write-to``'s), the question before writing ("Write and save", "Write,
save later", Cancel, and whether to replace outlines the project already has), the save, and
the report of what could not be written. The writing itself is the use case ``jobs.write_back``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PyQt5.QtWidgets import QCheckBox, QMessageBox, QWidget

from descriptron_sam2pal.gui.errors import shown_errors
from descriptron_sam2pal.jobs.review import ReviewSession
from descriptron_sam2pal.jobs.write_back import WriteBackSummary, pending_items

#: What the question returns: write, then save the project now / let File > Save save it.
WRITE_AND_SAVE = "save"
WRITE_ONLY = "write"


def write_back_with_dialogs(
    parent: QWidget,
    host: Any,
    session: ReviewSession,
    replace_existing: bool,
    after_write: Callable[[], None],
) -> WriteBackSummary | None:
    """Write the accepted structures of ``session`` into ``host.store``: check (a refusal is
    shown, nothing is written), ask, write, call ``host.notify_store_changed()`` (a failure part
    way still leaves written items in the store) and ``after_write()``, save when asked, report.
    Returns what was written (None when nothing was tried or the write failed)."""
    store = host.store
    if store is None:
        host.show_error(
            "Write back",
            "No Descriptron project is open: open the folder or "
            "annotation file of these specimens first, then write back.",
        )
        return None
    pending = pending_items(session)
    if not pending:
        host.show_status("Nothing new to write: accept structures first (A)")
        return None
    if not shown_errors(host, "Write back", lambda: session.check_write_back(store))[0]:
        return None
    choice = ask_write_back(parent, store, pending, replace_existing)
    if choice is None:
        return None
    how, replace = choice
    done, summary = shown_errors(
        host, "Write back", lambda: session.write_back(store, replace_existing=replace)
    )
    if not done or summary.changed:
        host.notify_store_changed()
    after_write()
    if not done:
        return None
    saved = ""
    if summary.changed and how == WRITE_AND_SAVE:
        before = len(getattr(store, "session_files", []))
        # StoreError and the like: the data is safe in memory.
        if shown_errors(host, "Save", host.save_store, message="The structures are in the project but it "
                        "could not be saved: {}\nUse File > Save after fixing the problem.")[0]:
            saved = " Project saved." + "".join(
                f" In Descriptron's folder session: Load Annotations {p.name}."
                for p in getattr(store, "session_files", [])[before:]
            )
    host.show_status(summary.message().splitlines()[0] + saved, 10000)
    if summary.skipped:
        show_not_written(parent, summary.message())
    return summary


def ask_write_back(
    parent: QWidget, store: Any, pending: list, replace_existing: bool
) -> tuple[str, bool] | None:
    """Ask before writing the ``pending`` items into ``store``: (WRITE_AND_SAVE or WRITE_ONLY,
    replace the project's outlines) or None (cancelled). ``replace_existing``: the checkbox's
    default."""
    n_spec = len({id(i.target) for i in pending})
    box = QMessageBox(
        QMessageBox.Question,
        "Write back to Descriptron",
        f"Write {len(pending)} accepted structure{'s' * (len(pending) != 1)} on "
        f"{n_spec} specimen{'s' * (n_spec != 1)} into {store_name(store)}?",
        QMessageBox.NoButton,
        parent,
    )
    box.setInformativeText(
        "Only what you accepted is written, with its score as a record. Rejected and "
        "unreviewed predictions are left out; nothing else in the project changes.\n" + saving_note(store)
    )
    save = box.addButton(QMessageBox.Save)
    save.setText("Write and save")
    save.setToolTip("Write the structures and save the project files now")
    apply = box.addButton(QMessageBox.Apply)
    apply.setText("Write, save later")
    apply.setToolTip("Write the structures; File > Save saves the project")
    box.addButton(QMessageBox.Cancel)
    box.setDefaultButton(save)
    replace = QCheckBox("Replace outlines the project already has for these structures")
    replace.setChecked(replace_existing)
    box.setCheckBox(replace)
    answer = box.exec_()
    if answer == QMessageBox.Save:
        return WRITE_AND_SAVE, replace.isChecked()
    if answer == QMessageBox.Apply:
        return WRITE_ONLY, replace.isChecked()
    return None


def show_not_written(parent: QWidget, message: str) -> None:
    """The write-back report when some accepted structures could not be written (and why)."""
    QMessageBox(QMessageBox.Information, "Write back", message, QMessageBox.Ok, parent).exec_()


def store_name(store: Any) -> str:
    path = getattr(store, "path", None)
    return f"the project {Path(path).name}" if path else "the project"


def saving_note(store: Any) -> str:
    """What saving does to the user's files, in the store's own convention (store/store.py)."""
    from descriptron_sam2pal.store import PER_IMAGE

    if getattr(store, "mode", None) == PER_IMAGE:
        return (
            "Saving adds a new <photo>_final_<time>.json (+ .rlejson) next to each changed photo; "
            "the earlier files stay as they are, as backups."
        )
    return "Saving keeps a backup copy of the annotation file first (<file>.bak-<date-time>)."
