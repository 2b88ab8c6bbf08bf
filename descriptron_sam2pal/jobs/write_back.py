"""Write back: the accepted items of a review (only those) into a Descriptron store, after the
checks every write into a user's store passes (the same as ``propagate --write-to``).

:func:`check_write_back` refuses, before anything is written, a store that is a predictions
file of ours, a store that holds none of the photos with accepted outlines (naming both
folders), one ``_final_`` save lacking some of them or older than a photo's newest file
(``jobs.store_target``), and a store that could not be saved (permissions, another run's
lock). Then each accepted item is checked against ``store.merge``'s rules (never over a
person's outline unless asked, never where the project marks the structure absent or
unknown, never a keypoint category or a mask of another size); what fails is reported in
the :class:`WriteBackSummary`, never half-written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from descriptron_sam2pal.imaging.drawing import drop_fragments, fragment_area
from descriptron_sam2pal.jobs.review import ACCEPTED, ReviewError, ReviewItem, ReviewSession
from descriptron_sam2pal.jobs.store_target import check_not_our_file, check_store_holds, open_project_names
from descriptron_sam2pal.store.merge import find_image, why_not_writable, write_structure
from descriptron_sam2pal.store.provenance import PREDICTION_SOURCE

#: ``attributes["source"]`` of every annotation written back.
SOURCE = PREDICTION_SOURCE


@dataclass
class WriteBackSummary:
    """What :meth:`ReviewSession.write_back` did."""

    written: list = field(default_factory=list)  # (image_id, structure, annotation id)
    marked_absent: list = field(default_factory=list)  # (image_id, structure)
    skipped: list = field(default_factory=list)  # (item label, reason): accepted, not written
    already_written: int = 0  # accepted items written by an earlier write-back
    not_accepted: int = 0  # rejected or unreviewed: never touched

    @property
    def changed(self) -> bool:
        return bool(self.written or self.marked_absent)

    def message(self) -> str:
        parts = [f"{len(self.written)} structure{'s' * (len(self.written) != 1)} written to the store"]
        if self.marked_absent:
            parts.append(f"{len(self.marked_absent)} marked absent")
        if self.already_written:
            parts.append(f"{self.already_written} written earlier (not written again)")
        if self.not_accepted:
            parts.append(f"{self.not_accepted} rejected or unreviewed (left out)")
        text = "; ".join(parts) + "."
        if self.skipped:
            text += f"\n{len(self.skipped)} accepted not written:\n" + "\n".join(
                f"  {label}: {reason}" for label, reason in self.skipped[:20]
            )
            if len(self.skipped) > 20:
                text += f"\n  ... and {len(self.skipped) - 20} more"
        return text


def pending_items(session: ReviewSession) -> list[ReviewItem]:
    """The items a write-back would write: accepted and not written yet."""
    return [i for i in session.items if i.state == ACCEPTED and not i.written]


def check_write_back(session: ReviewSession, store: Any) -> None:
    """UserError (the message names the files and what to do) when writing the pending items of
    ``session`` into ``store`` is refused; nothing is written then. See the module docstring."""
    pending = pending_items(session)
    if not pending:
        return
    names = open_project_names(store.path)
    check_not_our_file([store.path, *store.source_files], names)
    targets = list({id(i.target): i.target for i in pending}.values())
    check_store_holds(store, store.path, targets, names)
    store.check_writable()  # permissions, and no other run holding its lock


def write_back(
    session: ReviewSession, store: Any, replace_existing: bool = False, record_absent: bool = True
) -> WriteBackSummary:
    """Put the accepted items into ``store`` (an AnnotationStore); nothing else is touched.

    Each accepted item with a mask becomes ``store.add_structure(image, name, mask,
    attributes={"source": "sam2pal", "score", "object_score", "predicted_iou",
    "reviewed": "accepted", "corrected"}, replace=...)``. An unreviewed sam2pal
    prediction of that structure already in the store (``attributes.source ==
    "sam2pal"``) is replaced; an outline of the user's is replaced only with
    ``replace_existing``, else the item is skipped (reported), never duplicated. An accepted *absent*
    prediction (the reviewer agrees the structure is missing) sets the image's
    ``structure_status`` to "absent" when ``record_absent``. Items are matched to
    store images by file name (by id only for a specimen without a file); every accepted item is checked
    before the store is changed, so one bad item cannot leave half a change.
    The caller saves the store. :func:`check_write_back` runs first: a refusal writes nothing.
    """
    from descriptron_sam2pal.store import StoreError

    check_write_back(session, store)
    summary = WriteBackSummary()
    plan: list[tuple[ReviewItem, Any]] = []
    for item in session.items:
        if item.state != ACCEPTED:
            summary.not_accepted += 1
            continue
        if item.written:
            summary.already_written += 1
            continue
        reason, image = check_item(store, item, replace_existing, record_absent)
        if reason:
            summary.skipped.append((item.label, reason))
        else:
            plan.append((item, image))
    done = 0
    try:
        for item, image in plan:
            if item.absent:
                store.set_structure_status(image.id, item.structure, "absent")
                item.written = {"annotation_id": None, "status": "absent"}
                summary.marked_absent.append((image.id, item.structure))
            else:
                attrs = {
                    "source": SOURCE,
                    "score": rounded(item.score),
                    "object_score": rounded(item.object_score),
                    "predicted_iou": rounded(item.predicted_iou),
                    "reviewed": ACCEPTED,
                    "corrected": item.corrected,
                }
                ann_id = write_structure(
                    store,
                    image,
                    item.structure,
                    drop_fragments(item.current_mask),
                    attrs,
                    replace_user=replace_existing,
                )
                item.written = {"annotation_id": ann_id, "status": None}
                summary.written.append((image.id, item.structure, ann_id))
            done += 1
    except (StoreError, ValueError) as e:
        item = plan[done][0]
        raise ReviewError(
            f"Writing {item.label} into the store failed: {e}. "
            f"{done} structures were written before it (they stay marked as written)."
        ) from e
    finally:
        if done:
            session.forget_undo()  # the store has them now: no undo past this point
    return summary


def check_item(store: Any, item: ReviewItem, replace_existing: bool, record_absent: bool) -> tuple[str, Any]:
    """("", store image) when the item may be written, else (reason, None): the rules of
    ``store.merge`` (the same as ``propagate --write-to``)."""
    from descriptron_sam2pal.store import StoreError

    t = item.target
    try:
        image = find_image(store, t.image_id, t.path, t.file_name)
    except StoreError as e:
        return str(e), None
    if image is None:
        return "this specimen is not in the open Descriptron project", None
    if item.absent and not record_absent:
        return "predicted absent (nothing to write)", None
    shape = None if item.absent else tuple(item.current_mask.shape)
    if shape is not None and not drop_fragments(item.current_mask).any():
        return (
            f"its outline is only specks smaller than {fragment_area(shape):.0f} px\u00b2 "
            "(draw or fix it larger)"
        ), None
    reason = why_not_writable(store, image, item.structure, shape, replace_user=replace_existing)
    return (reason, None) if reason else ("", image)


def rounded(value: Optional[float]) -> Optional[float]:
    """A score as written into the store's attributes (4 decimals)."""
    return None if value is None else round(float(value), 4)
