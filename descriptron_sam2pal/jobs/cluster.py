"""Propagation on a Ray cluster: the same results as one process, spread over many machines.

``propagate_run(request, executor="ray")`` (``sam2pal propagate --ray [ADDRESS]``) hands
the targets to a pool of Ray actors. Each actor builds its model and its template
memories **once**, with the same calls as the single-process path
(``jobs.models.load_model``, ``jobs.templates.load_templates``, then
``engine.propagate.iter_propagate``), so its results are the ones a local run gives.
Only the request (plain dataclasses: the ``ModelRequest`` and the ``TemplateSpec`` masks)
and image paths go to the actors; results come back as the journal's JSON (masks as RLE).
With ``ship_images`` the driver also sends each image's bytes, for workers that do not
see the driver's files.

The driver keeps the one loop of the single-process path (``jobs.propagation``): it
receives the results **in input order** (a bounded re-order window), appends each finished
target to the journal (same run identity and target keys as a local run: a local run can
resume a Ray run and the other way round), and folds them into the predictions file and
the store.

Faults: an actor that dies is restarted by Ray (``max_restarts``) and what it was doing goes
back to the front of the queue, for whichever actor is free first; a target whose work
failed twice is reported like an unreadable image (``TargetResult.error``), never dropped.
Cancel or Ctrl-C kills the actors; the journal keeps every finished target.

Memory: at most ``window`` targets are dispatched ahead of the oldest unfinished one, and
each actor has one task in flight, so neither the driver nor an actor grows with the
number of targets (benchmarks/README.md, "Scale: a Ray cluster").

``ray`` is imported only inside these calls: ``jobs`` loads without it (``pip install
"descriptron-sam2pal[ray]"`` adds it).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from descriptron_sam2pal import UserError
from descriptron_sam2pal.jobs.models import BEETLE_DEMO_CHOICE, DEMO_CHOICE, ModelRequest, load_model, resolve_checkpoint
from descriptron_sam2pal.jobs.templates import TemplateSpec, load_templates

#: Test hook, read on the driver: "N:MARKER" makes an actor exit abruptly (``os._exit``) when it
#: starts its Nth target, once per MARKER file (the file records that it happened), as a crashed
#: worker would; "name=FILE" makes every actor that starts the target named FILE exit (a photo
#: that kills its worker every time).
CRASH_ENV = "SAM2PAL_RAY_TEST_CRASH"
#: Attempts of a target before it is reported as failed.
MAX_ATTEMPTS = 2
#: Restarts of a dead actor before it is given up.
MAX_RESTARTS = 3


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how wide to run. ``address``: "auto" (``ray.init()``'s own rule: the cluster
    of ``$RAY_ADDRESS`` or one started with ``ray start`` on this machine, else a new local
    one), "local" (always a new local one) or a Ray address ("HOST:6379", "ray://HOST:10001").
    ``workers``: actors (default: one per GPU; without GPUs one per 4 CPUs). ``batch_size``:
    targets per call of an actor (default: the engine's, 4 on a GPU, 1 on a CPU).
    ``ship_images``: send the image bytes to the actors (when they cannot read the driver's
    paths). ``cpus_per_worker``: CPU actors' share (default: the cluster's CPUs / workers)."""

    address: str | None = "auto"
    workers: int | None = None
    batch_size: int | None = None
    ship_images: bool = False
    cpus_per_worker: int | None = None


def require_ray() -> Any:
    """The ``ray`` module, or a UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError('running on a Ray cluster needs Ray: pip install "descriptron-sam2pal[ray]" '
                        "(on the machine you start from and on every node of the cluster)") from None
    return ray


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PropagationWorker:
    """One actor's state: the model, the adapter and the template memories, built once.

    Ray wraps this class (``ray.remote``) in :func:`start_workers`; it is plain Python so
    that it can be read and tested without a cluster."""

    def __init__(self, model: ModelRequest, templates: Sequence[TemplateSpec], confidence: bool,
                 orientation_search: bool, batch_size: int | None, threads: int | None,
                 crash: str | None = None) -> None:
        import torch

        from descriptron_sam2pal.engine.propagate import TemplateMemory

        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(model)
        self.memory = TemplateMemory(self.model, load_templates(templates, self.model.image_size))
        self.confidence, self.orientation_search = confidence, orientation_search
        self.batch_size = batch_size
        self.crash_at, self.crash_marker, self.crash_name = None, None, None
        if crash and crash.startswith("name="):
            self.crash_name = crash[len("name="):]
        elif crash:
            at, _, marker = crash.partition(":")
            self.crash_at, self.crash_marker = int(at), marker
        self.started = 0

    def identity(self) -> str:
        """The run identity of the journal (the same as a local run's)."""
        from descriptron_sam2pal.engine.propagate import run_identity

        return run_identity(self.model, self.memory, confidence=self.confidence,
                            orientation_search=self.orientation_search)

    def describe(self) -> dict:
        from descriptron_sam2pal.engine.propagate import default_batch_size

        return {"device": str(self.model.device), "image_size": self.model.image_size,
                "batch_size": self.batch_size or default_batch_size(self.model.device),
                "host": os.uname().nodename, "pid": os.getpid()}

    def peak_rss(self) -> int:
        return peak_rss_bytes()

    def segment(self, items: list[dict]) -> list[dict]:
        """Segment ``items`` ({"index", "path", "image_id", "structure_status", "key",
        "data": bytes or None}); returns per item {"index", "key", "result" (the journal's
        JSON) or "error" and "skipped"}."""
        from descriptron_sam2pal.engine.propagate import iter_propagate, target_key
        from descriptron_sam2pal.engine.results import Target

        self._maybe_crash(items)
        targets, keys, scratch = [], [], []
        try:
            for item in items:
                target = Target(path=item["path"], image_id=item["image_id"],
                                structure_status=dict(item["structure_status"] or {}))
                key = item.get("key")
                if item.get("data") is not None:
                    target.image, tmp = _decode_shipped(item["path"], item["data"])
                    scratch.append(tmp)
                elif key is None:
                    try:
                        key = target_key(target)
                    except (OSError, UserError):
                        key = None  # unreadable: iter_propagate reports it
                targets.append(target)
                keys.append(key)
            out = []
            results = iter_propagate(self.model, self.memory, targets, batch_size=self.batch_size,
                                     orientation_search=self.orientation_search, confidence=self.confidence)
            for item, key, r in zip(items, keys, results):
                if r.error:
                    error = r.error
                    for tmp in scratch:
                        error = error.replace(tmp, item["path"])
                    out.append({"index": item["index"], "key": key, "error": error, "skipped": r.skipped})
                else:
                    out.append({"index": item["index"], "key": key, "result": r.to_json()})
            return out
        finally:
            for tmp in scratch:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def _maybe_crash(self, items: list[dict]) -> None:
        if self.crash_name is not None and any(Path(i["path"]).name == self.crash_name for i in items):
            os._exit(1)
        self.started += len(items)
        if self.crash_at is None or self.started < self.crash_at:
            return
        try:
            fd = os.open(self.crash_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # it crashed once already
        os.close(fd)
        os._exit(1)


def _decode_shipped(path: str, data: bytes) -> tuple[Any, str]:
    """The pixels of a shipped image, read by the one image reader (``imaging.io.load_image``)
    from a scratch file with the original's name suffix; returns (array or None, scratch path)."""
    from descriptron_sam2pal.imaging.io import load_image

    fd, tmp = tempfile.mkstemp(prefix="sam2pal-", suffix=Path(path).suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        return load_image(tmp), tmp
    except UserError:
        return None, tmp  # the target falls back to its path: unreadable there too -> its error


def connect(address: str | None) -> bool:
    """Join (or start) the Ray cluster of ``address`` (see :class:`ClusterSettings`); True when
    this call started Ray (the caller shuts it down). A running ``ray.init`` is reused."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": False}
    try:
        if address in (None, "", "auto"):
            ray.init(**kwargs)
        else:
            ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc}. Start it with `ray start --head` "
                        "(see docs/cluster.md) or run --ray without an address for a local one") from None
    return True


def plan_workers(settings: ClusterSettings) -> tuple[int, dict]:
    """(number of actors, Ray resources of each) for the connected cluster."""
    ray = require_ray()
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if gpus:
        workers = settings.workers or gpus
        return workers, {"num_gpus": max(gpus // workers, 1) if workers <= gpus else gpus / workers,
                         "num_cpus": 1}
    workers = settings.workers or max(1, cpus // 4)
    share = settings.cpus_per_worker or max(1, cpus // workers)
    return workers, {"num_cpus": share}


def portable(model: ModelRequest, templates: Sequence[TemplateSpec]) -> tuple[ModelRequest, list[TemplateSpec]]:
    """The model request and templates with every file as an absolute path (a worker's working
    folder is not the driver's) and the default checkpoint resolved here, on the driver."""
    choice = resolve_checkpoint(model.choice)
    if choice not in (DEMO_CHOICE, BEETLE_DEMO_CHOICE):
        choice = os.path.abspath(choice)
    adapter = os.path.abspath(os.path.expanduser(model.adapter)) if model.adapter else None
    return (replace(model, choice=choice, adapter=adapter),
            [TemplateSpec(t.image_id, os.path.abspath(t.path), t.masks) for t in templates])


def start_workers(request: Any, settings: ClusterSettings, say: Callable[[str], None]) -> tuple[list, list[dict]]:
    """The actor pool for ``request`` (a ``PropagateRequest``), each actor built and ready, and
    what each is (``PropagationWorker.describe``)."""
    ray = require_ray()
    n, resources = plan_workers(settings)
    threads = None if resources.get("num_gpus") else int(resources["num_cpus"])
    actor = ray.remote(PropagationWorker).options(max_restarts=MAX_RESTARTS, max_task_retries=0, **resources)
    crash = os.environ.get(CRASH_ENV)
    model, templates = portable(request.model, request.templates)
    workers = [actor.remote(model, templates, request.confidence or request.orientation_search,
                            request.orientation_search, settings.batch_size or request.batch_size, threads,
                            crash) for _ in range(n)]
    try:
        where = ray.get([w.describe.remote() for w in workers])
    except ray.exceptions.RayActorError as exc:
        for w in workers:
            ray.kill(w)
        cause = str(getattr(exc, "cause", None) or exc).strip().splitlines()
        raise UserError(f"a Ray worker could not start ({cause[-1] if cause else exc}); the checkpoint, the "
                        "adapter and the template images must be at the same paths on every node, with the "
                        "same packages installed (docs/cluster.md)") from None
    hosts = sorted({d["host"] for d in where})
    say(f"Ray: {n} worker(s) on {len(hosts)} machine(s) ({', '.join(hosts)}), "
        f"{where[0]['image_size']} px on {', '.join(sorted({d['device'] for d in where}))}, "
        f"{where[0]['batch_size']} image(s) per call")
    return workers, where


def iter_propagate_on_ray(request: Any, journal_file: Path | None, settings: ClusterSettings,
                          progress: Callable | None = None, cancel: Any = None,
                          say: Callable[[str], None] = lambda text: None,
                          stats: dict | None = None) -> Iterator[Any]:
    """Yield a ``TargetResult`` per target of ``request``, in input order, segmented by a Ray
    actor pool (see the module docstring). The journal at ``journal_file`` is read (targets
    already in it are not redone) and appended to here, on the driver. ``stats``, when given,
    receives the actors' and the driver's peak memory at the end."""
    from descriptron_sam2pal.engine.control import ProgressReporter, is_cancelled
    from descriptron_sam2pal.engine.propagate import as_target, target_key
    from descriptron_sam2pal.engine.results import ResultJournal, TargetResult

    ray = require_ray()
    targets = [as_target(t) for t in request.targets]
    for t in targets:
        if t.image is not None or t.path is None:
            raise UserError("a Ray cluster segments image files; save the images and give their paths")
    started = connect(settings.address)
    workers: list = []
    try:
        workers, where = start_workers(request, settings, say)
        run = ray.get(workers[0].identity.remote())
        journal = ResultJournal(journal_file) if journal_file is not None else None
        done_before = journal.index(run) if journal is not None else {}  # key -> line: not every result
        keys: list[str | None] = [None] * len(targets)
        cached: set[int] = set()
        if done_before or settings.ship_images:
            for i, t in enumerate(targets):
                try:
                    keys[i] = target_key(t)
                except (OSError, UserError):
                    continue
                if keys[i] in done_before:
                    cached.add(i)
        if cached:
            say(f"{len(cached)} of {len(targets)} image(s) already in the journal; "
                f"segmenting {len(targets) - len(cached)} on the cluster")
        reporter = ProgressReporter("propagate", len(targets), progress, start_done=len(cached))
        batch = min(d["batch_size"] for d in where)
        window = max(4 * batch * len(workers), 16)
        pending = deque(i for i in range(len(targets)) if i not in cached)
        retry: deque[int] = deque()  # targets whose task failed once: sent again, alone
        attempts: dict[int, int] = {}
        ready: dict[int, Any] = {}
        in_flight: dict[Any, tuple[Any, list[int]]] = {}
        idle = list(workers)
        deaths = {id(w): 0 for w in workers}
        next_out = 0

        def item(i: int) -> dict:
            t = targets[i]
            data = None
            if settings.ship_images:
                try:
                    data = Path(t.path).read_bytes()
                except OSError:
                    data = None  # the actor reports it unreadable, as a local run would
            return {"index": i, "path": os.path.abspath(t.path), "image_id": t.image_id, "key": keys[i],
                    "structure_status": t.structure_status, "data": data}

        def failed(i: int, why: str) -> Any:
            t = targets[i]
            return TargetResult(t.image_id, t.path, 0, 0,
                                error=f"the worker segmenting it failed {MAX_ATTEMPTS} times ({why})",
                                skipped=t.skipped)

        while next_out < len(targets):
            done_now = 0
            while next_out < len(targets) and (next_out in cached or next_out in ready):
                if next_out in cached:
                    r = TargetResult.from_json(journal.read(done_before[keys[next_out]]))
                    r.image_id, r.path = targets[next_out].image_id, targets[next_out].path
                else:
                    r = ready.pop(next_out)
                next_out += 1
                done_now += 1
                yield r
            if done_now:
                reporter.report(next_out, message=str(targets[next_out - 1].path or ""))
            if next_out >= len(targets):
                break
            if is_cancelled(cancel):
                return
            while idle and (retry or (pending and pending[0] < next_out + window)):
                if retry:
                    chunk = [retry.popleft()]
                else:
                    chunk = []
                    while pending and len(chunk) < batch and pending[0] < next_out + window:
                        chunk.append(pending.popleft())
                worker = idle.pop()
                in_flight[worker.segment.remote([item(i) for i in chunk])] = (worker, chunk)
            if not in_flight:
                if not workers:
                    raise UserError("every Ray worker died and could not be restarted; see the Ray logs "
                                    "(`ray logs`), fix the cause and run again with --resume")
                continue
            done_refs, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in done_refs:
                worker, chunk = in_flight.pop(ref)
                try:
                    answers = ray.get(ref)
                except (ray.exceptions.RayError, OSError) as exc:
                    died = isinstance(exc, ray.exceptions.RayActorError)
                    if chunk is None or died:
                        deaths[id(worker)] += died
                        if deaths[id(worker)] > MAX_RESTARTS:
                            workers.remove(worker)
                            say(f"Ray: a worker died {deaths[id(worker)]} times; going on without it")
                        else:  # wait until Ray has restarted it before giving it work again
                            in_flight[worker.describe.remote()] = (worker, None)
                    else:
                        idle.append(worker)
                    if chunk is None:
                        continue
                    why = "the worker process died" if died else f"{type(exc).__name__}: {exc}"[:300]
                    for i in chunk:
                        attempts[i] = attempts.get(i, 0) + 1
                        if attempts[i] >= MAX_ATTEMPTS:
                            ready[i] = failed(i, why)
                        else:
                            retry.append(i)
                    say(f"Ray: a task of {len(chunk)} image(s) failed ({why.splitlines()[0]}); "
                        "retrying them on the next free worker")
                    continue
                idle.append(worker)
                if chunk is None:
                    continue  # a restarted worker answered: it is ready again
                entries = []
                for a in answers:
                    i = a["index"]
                    t = targets[i]
                    if "error" in a:  # worded with the path as given, as a local run words it
                        error = a["error"].replace(os.path.abspath(t.path), str(t.path))
                        ready[i] = TargetResult(t.image_id, t.path, 0, 0, error=error, skipped=dict(a["skipped"]))
                        continue
                    r = TargetResult.from_json(a["result"])
                    r.image_id, r.path, r.from_journal = t.image_id, t.path, False
                    ready[i] = r
                    if a["key"] is not None:
                        entries.append((a["key"], r))
                if journal is not None:
                    journal.append(run, entries)
        if stats is not None:
            stats["worker_peak_rss"] = ray.get([w.peak_rss.remote() for w in workers])
            stats["driver_peak_rss"] = peak_rss_bytes()
            stats["workers"] = len(workers)
    finally:
        for w in workers:
            ray.kill(w)
        if started:
            ray.shutdown()
