"""The Segment use case: propagate the templates to every target, write the predictions
file (with its journal, for resuming) and, when asked, merge into a Descriptron store.

Everything that can be checked is checked before the first image is segmented:
outputs against inputs, the output folder, the store to merge into (readable, every
target matched to one image of the right size), so a long run never ends writing nothing.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from descriptron_sam2pal import UserError
from descriptron_sam2pal.jobs.models import (BEETLE_DEMO_CHOICE, DEMO_CHOICE, ModelRequest, adapter_file,
                                            check_memory_for, load_model, resolve_checkpoint,
                                            resolved_image_size)
from descriptron_sam2pal.jobs.outputs import (check_outputs, check_predictions_out, check_writable_folder,
                                             remove_leftover_temps)
from descriptron_sam2pal.jobs.store_target import (check_not_our_file, check_store_holds, target_path,
                                                  write_to_names)
from descriptron_sam2pal.jobs.templates import TemplateSpec, check_structures_kept, load_templates

if TYPE_CHECKING:  # importing jobs loads no torch: these are for the annotations only
    from descriptron_sam2pal.engine.control import CancelToken, ProgressCallback
    from descriptron_sam2pal.engine.results import Target, TargetResult
    from descriptron_sam2pal.jobs.cluster import ClusterSettings
    from descriptron_sam2pal.jobs.training import TrainOutcome
    from descriptron_sam2pal.model.build import LoadedModel
    from descriptron_sam2pal.store import AnnotationStore, ImageRecord
    from descriptron_sam2pal.store.merge import MergeSummary


#: The predictions file of a run folder made from the GUI (its review is ``review.json`` beside it).
PREDICTIONS_FILE = "predictions.json"


@dataclass
class PropagateRequest:
    """Segment ``targets`` (image paths, store records or engine Targets) from ``templates``.

    ``out``: the predictions file (``.json`` + ``.rlejson``; its journal is
    ``<out>.journal.jsonl``); ``write_to``: a Descriptron store to merge into; ``protected``:
    more input files no output may overwrite ({what they are: paths}, e.g. the template
    stores); ``resume``: reuse the journal of an interrupted run with the same settings;
    ``overwrite``: the user allows ``out`` to replace a file sam2pal did not write
    (``jobs.outputs``; never an input); ``cluster``: segment on a Ray cluster
    (``jobs.cluster.ClusterSettings``: address, workers, ship_images), None: in this process.
    Both write the same photos, structures and outlines (scores may differ in their last
    decimals), and their journals resume each other."""

    model: ModelRequest
    templates: Sequence[TemplateSpec]
    targets: Sequence[str | os.PathLike | ImageRecord | Target]
    out: Path | None = None
    write_to: str | os.PathLike | None = None
    batch_size: int | None = None
    orientation_search: bool = False
    # The palindrome confidence (a second decoder pass per target, back to the templates): off
    # by default, the review score does not use it; orientation search compares it, so it is
    # on whenever orientation search is.
    confidence: bool = False
    resume: bool = False
    protected: Mapping[str, Sequence[str | os.PathLike]] = field(default_factory=dict)
    # stores (open, or their files or folders) whose structure_status applies to path targets
    status_stores: Sequence[AnnotationStore | str | os.PathLike] = ()
    overwrite: bool = False
    cluster: ClusterSettings | None = None


@dataclass
class PropagateOutcome:
    """What a run did: ``results`` (kept when asked), files ``written``, the store ``merge``
    summary, the targets that ``failed`` (unreadable), and whether it was ``cancelled``. A Ray
    run that finished with ``ClusterSettings.measure_memory`` also says how much memory it took in
    ``cluster_stats`` (``driver_peak_rss``, ``worker_peak_rss`` per actor, in bytes, and ``workers``)."""

    n_targets: int
    results: list[TargetResult] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    merged: MergeSummary | None = None
    failed: list[TargetResult] = field(default_factory=list)
    cancelled: bool = False
    encoder_passes: int | None = None
    model: LoadedModel | None = None  # the model of a local run (None on a Ray cluster)
    cluster_stats: dict[str, int | list[int]] = field(default_factory=dict)


def journal_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".journal.jsonl")


def preflight(request: PropagateRequest) -> Any:
    """Every check that needs no model; returns the opened ``write_to`` store (or None).
    Path targets get the ``structure_status`` the stores record for them (``request.targets``
    is replaced by the completed list)."""
    inputs: dict[str, list] = {k: list(v) for k, v in request.protected.items()}
    inputs["a template image"] = [t.path for t in request.templates]
    inputs["a specimen photo"] = [p for p in map(target_path, request.targets) if p]
    if request.model.choice not in (None, DEMO_CHOICE, BEETLE_DEMO_CHOICE):
        inputs["the checkpoint"] = [resolve_checkpoint(request.model.choice)]
    if request.model.adapter:
        inputs["the adapter"] = [adapter_file(request.model.adapter)]
    size = resolved_image_size(request.model)
    check_memory_for(size)
    if size:  # a structure that vanishes at this size is named before the model loads
        check_structures_kept(request.templates, size)
    from descriptron_sam2pal.jobs.specimens import check_distinct_specimens

    check_distinct_specimens(inputs["a specimen photo"] + inputs["a template image"])
    store = None
    if request.write_to:
        from descriptron_sam2pal.store import AnnotationStore

        check_not_our_file([request.write_to], write_to_names(request.write_to))
        store = AnnotationStore.open(request.write_to)  # a store we cannot read stops us here
        inputs["the store of --write-to"] = [str(p) for p in store.source_files] + [str(request.write_to)]
    if request.out is not None:
        check_outputs({"--out": [request.out, journal_path(request.out)]}, inputs)
        check_predictions_out(request.out, journal_path(request.out), overwrite=request.overwrite)
        check_writable_folder(Path(request.out).expanduser().parent, "the predictions")
    stores = [store] if store is not None else []
    if request.status_stores:
        from descriptron_sam2pal.store import AnnotationStore

        stores += [s if hasattr(s, "images") else AnnotationStore.open(s) for s in request.status_stores]
    request.targets = with_structure_status(request.targets, stores)
    if store is not None:
        check_store_holds(store, request.write_to, request.targets, write_to_names(request.write_to))
        _check_targets_fit(store, request.targets)
        store.check_writable()  # permissions, and no other run holding its lock
    return store


def _remove_leftovers(request: PropagateRequest, store: Any, say: Callable[[str], None]) -> None:
    """The temporary files a killed run of ours left beside the predictions and in the store's
    folders (``jobs.outputs.remove_leftover_temps``); said, never silent."""
    removed = []
    if request.out is not None:
        out = Path(request.out).expanduser()
        names = {out.name, out.with_suffix(".rlejson").name, out.with_suffix(".json").name}
        removed += remove_leftover_temps(out.parent, names)
    if store is not None:
        for folder in sorted(store.folders()):
            removed += remove_leftover_temps(folder)
    if removed:
        say(f"removed {len(removed)} temporary file(s) left by an interrupted run: "
            + ", ".join(str(p) for p in removed[:5]) + (" ..." if len(removed) > 5 else ""))


def with_structure_status(targets: Sequence[Any], stores: Sequence[Any]) -> list:
    """Path targets that a store knows carry that image's ``structure_status``, so a structure
    the project marks absent or unknown is neither predicted nor written, on every path."""
    from descriptron_sam2pal.engine.results import Target
    from descriptron_sam2pal.store.merge import find_image

    out = []
    for item in targets:
        if isinstance(item, (str, os.PathLike)) and stores:
            status = {}
            for store in stores:
                record = find_image(store, None, str(item))
                if record is not None and record.structure_status:
                    status = dict(record.structure_status)
                    break
            if status:
                item = Target(path=str(item), structure_status=status)
        out.append(item)
    return out


def _check_targets_fit(store: Any, targets: Sequence[Any]) -> None:
    """Each target matches at most one store image, of the photo's size (header only)."""
    from descriptron_sam2pal.imaging.io import read_image_size
    from descriptron_sam2pal.store.merge import find_image

    problems = []
    for item in targets:
        path = target_path(item)
        record = find_image(store, getattr(item, "id", getattr(item, "image_id", None)), path)
        if record is None or path is None or record.height is None:
            continue
        try:
            h, w = read_image_size(path)
        except UserError:
            continue  # reported as an unreadable image when its turn comes
        if (h, w) != (record.height, record.width):
            problems.append(f"{Path(path).name} is {w}x{h} px but the store says "
                            f"{record.width}x{record.height} px")
    if problems:
        raise UserError("the store of --write-to does not fit these photos: " + "; ".join(problems[:5])
                        + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
                        + ". Was a photo replaced? Fix the store's image entry or merge into another store")


def propagate_run(request: PropagateRequest, progress: ProgressCallback | None = None,
                  cancel: CancelToken | None = None, log_fn: Callable[[str], None] | None = None,
                  trained: TrainOutcome | None = None, keep_results: bool = False) -> PropagateOutcome:
    """Run ``request`` (see the module docstring), in this process or, with ``request.cluster``,
    on a Ray cluster (``jobs.cluster``). ``trained``: a ``jobs.training.TrainOutcome`` whose model
    and templates are used instead of loading them. Results stream into the predictions file and
    the store (memory does not grow with the number of targets); ``keep_results`` also returns
    them. A cancelled run writes nothing but its journal (rerun with ``resume`` to go on).
    ``log_fn`` gets the lines worth showing the user (the one log channel of the use cases)."""
    say = log_fn or (lambda text: None)
    if request.cluster is not None:
        from descriptron_sam2pal.jobs.cluster import require_ray

        require_ray()  # before any work: says how to install it
        if trained is not None:
            raise UserError("a model trained in this session cannot be sent to a Ray cluster; "
                            "use its saved adapter (the training run folder) instead")
    store = preflight(request)
    with contextlib.ExitStack() as held:
        if store is not None:
            # Held for the whole run: a second run on the same store is refused at its start
            # (check_writable), not after hours of work; save() re-enters it.
            held.enter_context(store.lock(timeout=0))
        _remove_leftovers(request, store, say)
        return _run(request, store, progress=progress, cancel=cancel, say=say, trained=trained,
                    keep_results=keep_results)


def _cleanup(step: Callable[[], Any], what: str) -> None:
    """Run a cleanup ``step``; a failure is logged, never raised over the run's own outcome."""
    try:
        step()
    except Exception as exc:  # noqa: BLE001 - reported, and the first error (if any) goes on
        import logging

        logging.getLogger(__name__).warning("could not %s (%s)", what, exc)


def _apply_scores(scores: Mapping[tuple[int, str], float], builder: Any, store: Any,
                  in_store: Mapping[tuple[int, str], tuple], results: list | None) -> None:
    """The collection's review scores ({(result number from 1, structure): score}) into the
    predictions being built, the store's ``score`` attributes of what this run merged, and the
    kept results."""
    if builder is not None:
        builder.set_scores(scores)
    if store is not None:
        for key, value in scores.items():
            if key in in_store:
                store.update_attributes(*in_store[key], {"score": value})
    if results is not None:
        for (number, name), value in scores.items():
            results[number - 1].structures[name].score = value


def _prepare_journal(request: PropagateRequest) -> None:
    """The folder of ``request.out`` made; a journal left by an earlier run is removed unless the
    request resumes it."""
    Path(request.out).expanduser().parent.mkdir(parents=True, exist_ok=True)
    journal = journal_path(request.out)
    if journal.exists() and not request.resume:
        journal.unlink()


def _segmentation(request: PropagateRequest, trained: TrainOutcome | None, journal: Path | None,
                  progress: ProgressCallback, cancel: CancelToken | None, say: Callable[[str], None],
                  stats: dict) -> tuple[Iterator[TargetResult], LoadedModel | None]:
    """The results of every target, in input order, from this process or a Ray cluster (both
    resume ``journal`` by the same rule), and the model of a local run."""
    if request.cluster is not None:
        from descriptron_sam2pal.jobs.cluster import iter_propagate_on_ray

        say(f"Segmenting {len(request.targets)} image(s) from {len(request.templates)} template(s) "
            "on a Ray cluster")
        return iter_propagate_on_ray(request, journal, progress=progress, cancel=cancel, say=say,
                                     stats=stats), None
    from descriptron_sam2pal.engine.memory_propagation import iter_propagate

    if trained is not None:
        model, templates = trained.model, trained.templates
    else:
        say("Loading SAM2" + (f" with adapter {request.model.adapter}" if request.model.adapter else ""))
        model = load_model(request.model)
        templates = load_templates(request.templates, model.image_size)
    say(f"Segmenting {len(request.targets)} image(s) from {len(templates)} template(s), "
        f"{model.image_size} px on {model.device}")
    return iter_propagate(model, templates, request.targets, batch_size=request.batch_size,
                          progress=progress, cancel=cancel, journal=journal,
                          orientation_search=request.orientation_search,
                          confidence=request.confidence or request.orientation_search), model


def _run(request: PropagateRequest, store: AnnotationStore | None, *, progress: ProgressCallback | None,
         cancel: CancelToken | None, say: Callable[[str], None], trained: TrainOutcome | None,
         keep_results: bool) -> PropagateOutcome:
    from descriptron_sam2pal.engine.collection_score import CollectionScorer
    from descriptron_sam2pal.engine.predictions import PredictionsBuilder
    from descriptron_sam2pal.store.merge import MergeSummary, merge_results

    last = {}

    def report(p) -> None:
        last["progress"] = p
        if progress is not None:
            progress(p)

    journal = journal_path(request.out) if request.out is not None else None
    stats: dict = {}
    # The model loads first (a local run): a run that cannot start leaves an earlier journal alone.
    results, model = _segmentation(request, trained, journal, report, cancel, say, stats)
    outcome = PropagateOutcome(len(request.targets), model=model, cluster_stats=stats)
    if request.out is not None:
        _prepare_journal(request)
    builder = PredictionsBuilder(spool_dir=Path(request.out).parent) if request.out is not None else None
    merged = MergeSummary()
    scorer = CollectionScorer()
    in_store: dict[tuple[int, str], tuple] = {}  # (result number, structure): (image id, annotation id)
    try:
        for number, r in enumerate(results, 1):  # numbered as the predictions builder counts
            if builder is not None:
                builder.add(r)
            if keep_results:
                outcome.results.append(r)
            scorer.add(number, r)
            if r.error:
                outcome.failed.append(r)
            elif store is not None:
                added = merge_results(store, [r])
                in_store.update(
                    {(number, name): (image_id, ann_id) for image_id, name, ann_id in added.written}
                )
                merged += added
        if cancel is not None and cancel.cancelled:
            outcome.cancelled = True
            return outcome
        rescored = scorer.scores()
        if rescored:
            say(f"Review scores of {len(rescored)} outline(s) updated: outlines unlike the other specimens' "
                "outlines of their structure now come first in the Review")
            _apply_scores(rescored, builder, store, in_store, outcome.results if keep_results else None)
        if builder is not None:
            outcome.written = _write(builder, request.out)
    finally:
        # Cleanup never masks the error that stopped the run (e.g. a full disk failing twice).
        close = getattr(results, "close", None)
        if close is not None:
            _cleanup(close, "stop the segmentation workers")  # a generator stopped early releases them now
        if builder is not None:
            _cleanup(builder.close, "remove the temporary spool files")
    if store is not None:
        store.save()
        merged.session_files = list(store.session_files)
        outcome.merged = merged
    if journal is not None and journal.exists():
        journal.unlink()
    if "progress" in last:
        outcome.encoder_passes = last["progress"].metrics.get("encoder_passes")
    return outcome


def _write(builder: Any, out: Path) -> list[Path]:
    """The predictions file (``engine.predictions.write_predictions``); a failure is one UserError
    that says how to go on (the journal keeps every segmented image)."""
    from descriptron_sam2pal.engine.predictions import write_predictions

    try:
        return write_predictions(builder, out)
    except (OSError, UserError) as exc:
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        why = getattr(cause, "strerror", None) or str(cause or exc)
        raise UserError(f"could not write the predictions {out} ({why}); nothing was changed. "
                        f"Free disk space (or check write permission) in {Path(out).parent}, "
                        f"then run the same command again with --resume: the {len(builder.images)} segmented "
                        "image(s) are kept in its journal and not redone") from exc
