"""The store's categories: each Descriptron file numbers its own categories; the store matches
them by name across files and gives a new structure an id that relabels nothing."""

from __future__ import annotations

import copy
from typing import Any

from descriptron_sam2pal.store.coco import CocoDocument, hashable, id_key
from descriptron_sam2pal.store.validation import (
    TRASH,
    Warn,
    is_number,
    is_structure_category,
    usable_categories,
)


class CategoryTable:
    """Category names and ids of the store's documents (first seen wins for a name)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}  # name -> id (first seen)
        self.entries: dict[str, dict] = {}  # name -> first entry
        self.by_doc: dict[int, dict[Any, dict]] = {}  # id(doc) -> id_key(category id) -> entry
        self.next_id = 1  # no category or annotation of any document uses it or a higher id

    def add_document(self, doc: CocoDocument, warn: Warn) -> None:
        """Read the categories of ``doc`` (see :func:`usable_categories`); a name with two ids in
        it, or another id than in an earlier file, is warned about and matched by name."""
        by_id = usable_categories(doc, warn)
        names: dict[str, Any] = {}
        for key, cat in by_id.items():
            name = cat["name"]
            if name in names:
                warn(
                    f'{doc.path}: category "{name}" has two ids ({names[name]!r} and {key!r}); '
                    f'both are read as "{name}", new annotations use id {names[name]!r}.'
                )
                continue
            names[name] = key
            if name in self.ids and self.ids[name] != key:
                warn(
                    f'{doc.path}: category "{name}" has id {key!r} here but {self.ids[name]!r} '
                    "in another file; matched by name."
                )
            self.ids.setdefault(name, key)
            self.entries.setdefault(name, cat)
        self.by_doc[id(doc)] = by_id

    def reserve_ids(self, docs: list[CocoDocument]) -> None:
        """Move :attr:`next_id` past every category id of ``docs`` and every id an annotation uses
        (taken even when its category entry is missing: a new category with that id would
        relabel the annotation)."""
        cat_ids = [c.get("id") for d in docs for c in d.data["categories"] if isinstance(c, dict)]
        used = [a.get("category_id") for d in docs for a in d.data["annotations"] if isinstance(a, dict)]
        nums = [int(v) for v in [*cat_ids, *used] if is_number(v)] + [
            int(v) for v in self.ids.values() if is_number(v)
        ]
        self.next_id = max([self.next_id - 1, 0, *nums]) + 1

    def structure_names(self) -> list[str]:
        """Names usable as mask structures: no Trash, no keypoint categories."""
        return [n for n in self.ids if is_structure_category(self.entries[n])]

    def for_new_document(self) -> list[dict]:
        """The ``categories`` of a new per-image file: copies of the store's entries with their
        store-wide ids, Trash left out (Descriptron drops it on save)."""
        names = [n for n in self.ids if n.lower() != TRASH]
        cats = [copy.deepcopy(self.entries[n]) for n in names]
        for cat, name in zip(cats, names):
            cat["id"] = self.ids[name]
        return cats

    def adopt(self, doc: CocoDocument) -> None:
        """Index the categories of a document the store made (:meth:`for_new_document`)."""
        self.by_doc[id(doc)] = {id_key(c["id"]): c for c in doc.data["categories"]}

    def id_in(self, doc: CocoDocument, name: str) -> Any:
        """The id of ``name`` in ``doc``, adding the category (store-wide id if free, else a new one)."""
        cats = self.by_doc[id(doc)]
        for cat in cats.values():
            if cat["name"] == name:
                return cat["id"]
        cat_id = self.ids.get(name)
        used = {
            id_key(a.get("category_id"))
            for a in doc.data["annotations"]
            if isinstance(a, dict) and hashable(id_key(a.get("category_id")))
        }
        if cat_id is None or id_key(cat_id) in cats or id_key(cat_id) in used:
            cat_id = self.next_id
        self.next_id = max(self.next_id, int(cat_id) + 1 if is_number(cat_id) else 0)
        entry = (
            copy.deepcopy(self.entries[name])
            if name in self.entries
            else {"id": cat_id, "name": name, "supercategory": ""}
        )
        entry["id"] = cat_id
        doc.data["categories"].append(entry)
        cats[id_key(cat_id)] = entry
        self.ids.setdefault(name, cat_id)
        self.entries.setdefault(name, entry)
        return cat_id
