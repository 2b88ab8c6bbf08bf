"""Writing propagation results as a COCO predictions file (.json + .rlejson); merging them into a
Descriptron store is ``store.merge.merge_results``."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping, TextIO

import numpy as np

from descriptron_sam2pal import UserError
from descriptron_sam2pal.imaging.masks import mask_area, mask_bbox, mask_to_polygons, mask_to_rle
from descriptron_sam2pal.store.coco import PAIR_KEY, needs_rle, write_streams
from descriptron_sam2pal.store.ours import OUTPUT_KEY, PREDICTIONS
from descriptron_sam2pal.store.stem import basename, companion_path
from descriptron_sam2pal.engine.results import TargetResult


class PredictionsBuilder:
    """Builds the COCO predictions document one result at a time.

    Each result is turned into polygons (and RLE where needed) as it arrives and
    its annotations are spooled, as JSON text, to an anonymous temporary file: a
    run over thousands of specimens keeps a small record per image in memory,
    neither its full-resolution masks nor its outlines (those grew the process with every
    target before: benchmarks/README.md). :func:`write_predictions` streams the
    spool into the output files.
    """

    def __init__(
        self, categories: Mapping[str, int] | None = None, spool_dir: str | Path | None = None
    ) -> None:
        """``spool_dir``: where the (nameless, self-deleting) spool files live; give the output's
        folder so that they use the disk the output goes to (default: the system's temp folder)."""
        self.categories: dict[str, int] = dict(categories or {})
        self.images: list[dict] = []
        self.errors: list[dict] = []
        self.n_annotations = 0
        self._count = 0
        self.pair_token: str | None = None  # set by seal()
        self._ids: dict[tuple[int, str], int] = {}  # (result number, structure): annotation id
        self._scores: dict[int, float] = {}  # annotation id: its review score redone (set_scores)
        # One line per annotation: its polygon form, and its .rlejson form (RLE or the same).
        self._plain: TextIO = tempfile.TemporaryFile(
            "w+", encoding="utf-8", prefix="sam2pal-pred-", dir=spool_dir
        )
        self._rle: TextIO = tempfile.TemporaryFile(
            "w+", encoding="utf-8", prefix="sam2pal-pred-", dir=spool_dir
        )

    def add(self, r: TargetResult) -> None:
        self._count += 1
        for name in r.structures:
            if name not in self.categories:
                self.categories[name] = max(self.categories.values(), default=0) + 1
        if not r.ok:
            self.errors.append({"path": r.path, "image_id": r.image_id, "error": r.error})
            return
        image_id = r.image_id if r.image_id is not None else self._count
        self.images.append(
            {
                "id": image_id,
                "file_name": basename(r.path) if r.path else f"image_{self._count}",
                "height": r.height,
                "width": r.width,
            }
        )
        for name, s in r.structures.items():
            if not s.present:
                continue
            polygons = [[float(v) for v in p] for p in mask_to_polygons(s.mask)]
            self.n_annotations += 1
            self._ids[(self._count, name)] = self.n_annotations
            ann = {
                "id": self.n_annotations, "image_id": image_id, "category_id": self.categories[name],
                "segmentation": polygons, "area": mask_area(s.mask), "bbox": mask_bbox(s.mask), "iscrowd": 0,
                "instance_id": 1, "score": s.score, "object_score": s.object_score,
                "predicted_iou": s.predicted_iou, "palindrome_confidence": s.palindrome_confidence,
                "orientation": r.orientation,
            }
            plain = json.dumps(ann, ensure_ascii=False)
            rle = plain
            if needs_rle(np.asarray(s.mask, dtype=bool), polygons):
                rle = json.dumps({**ann, "segmentation": mask_to_rle(s.mask)}, ensure_ascii=False)
            try:
                self._plain.write(plain + "\n")
                self._rle.write(rle + "\n")
            except OSError as exc:
                raise UserError(f"no room to keep the predictions until they are written "
                                f"({exc.strerror or exc}): free disk space where the output goes "
                                "and run again with --resume (finished images are not redone)") from exc

    def set_scores(self, scores: Mapping[tuple[int, str], float]) -> None:
        """Replace the ``score`` of annotations already added: {(result number, counting from 1
        in the order of :meth:`add`, structure): score} (the review score redone with the
        run's collection, engine.collection_score)."""
        for key, value in scores.items():
            if key in self._ids:
                self._scores[self._ids[key]] = float(value)

    def _head(self) -> dict:
        # OUTPUT_KEY first: the file is recognisably ours from its first bytes (store.ours).
        head = {
            OUTPUT_KEY: PREDICTIONS,
            "info": {"description": "SAM2-PAL predictions", "errors": list(self.errors)},
            "images": list(self.images),
        }
        if self.pair_token is not None:
            head[PAIR_KEY] = self.pair_token
        return head

    def seal(self) -> str:
        """Fix the token both files of the pair carry (``store.coco.PAIR_KEY``), so a reader can
        tell a .json from another run's .rlejson. Derived from the content: the same results
        give the same bytes."""
        h = hashlib.sha256()
        for spool in (self._plain, self._rle):
            for line in self._lines(spool):
                h.update(line.encode())
        h.update(json.dumps([self.images, self.errors, self._categories()], sort_keys=True).encode())
        self.pair_token = h.hexdigest()[:32]
        return self.pair_token

    def _categories(self) -> list[dict]:
        cats = sorted(self.categories.items(), key=lambda x: x[1])
        return [{"id": i, "name": n, "supercategory": ""} for n, i in cats]

    def _lines(self, spool: TextIO) -> Iterator[str]:
        spool.flush()
        spool.seek(0)
        for line in spool:
            line = line.rstrip("\n")
            if self._scores:
                ann = json.loads(line)
                if ann["id"] in self._scores:
                    ann["score"] = self._scores[ann["id"]]
                    line = json.dumps(ann, ensure_ascii=False)
            yield line
        spool.seek(0, os.SEEK_END)

    def write_to(self, f: TextIO, rle: bool) -> None:
        """Stream the document (``rle``: the .rlejson form) into ``f`` as JSON."""
        head = json.dumps(self._head(), ensure_ascii=False)
        f.write(head[:-1] + ', "annotations": [')
        for i, line in enumerate(self._lines(self._rle if rle else self._plain)):
            f.write(line if i == 0 else "," + line)
        f.write('], "categories": ' + json.dumps(self._categories(), ensure_ascii=False) + "}\n")

    def document(self) -> tuple[dict, dict]:
        """(COCO document, {annotation id: RLE}), read back from the spool (for small runs)."""
        annotations = [json.loads(line) for line in self._lines(self._plain)]
        rle = {}
        for line in self._lines(self._rle):
            a = json.loads(line)
            if isinstance(a["segmentation"], dict):
                rle[a["id"]] = a["segmentation"]
        return {**self._head(), "annotations": annotations, "categories": self._categories()}, rle

    def close(self) -> None:
        self._plain.close()
        self._rle.close()


def write_predictions(results: Iterable[TargetResult] | PredictionsBuilder, path: str | Path,
                      categories: Mapping[str, int] | None = None) -> list[Path]:
    """Write ``path`` (.json, polygons) and its ``.rlejson`` companion (RLE for masks with
    holes) atomically. Returns the written paths. Whether ``path`` may be replaced is decided
    before the work (``jobs.outputs.check_output_file``): no backup copy is made here.

    images: ``id`` (the result's image id, else 1, 2, ...), ``file_name``, ``height``,
    ``width``; annotations (present structures only): every component's polygon, ``bbox``,
    ``area``, ``category_id``, ``score`` (the review score, an estimated IoU),
    ``object_score``, ``predicted_iou``, ``palindrome_confidence``, ``orientation``; targets that
    failed are listed in ``info.errors``. ``categories`` fixes ids (e.g. the store's); new names get ids
    after the largest.
    """
    path = Path(path)
    if path.suffix.lower() == ".rlejson":
        path = companion_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    own = not isinstance(results, PredictionsBuilder)
    builder = PredictionsBuilder(categories, spool_dir=path.parent) if own else results
    try:
        if own:
            for r in results:
                builder.add(r)
        builder.seal()
        # The .rlejson first, the .json last: a crash between the two renames leaves a new
        # .rlejson beside the old .json, which readers tell apart by the pair token.
        return write_streams([(companion_path(path), lambda f: builder.write_to(f, rle=True)),
                              (path, lambda f: builder.write_to(f, rle=False))],
                             backup=False)[::-1]
    finally:
        if own:
            builder.close()
