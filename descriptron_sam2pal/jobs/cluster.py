"""Propagation on a Ray cluster: the same results as one process, spread over many machines.

``propagate_run(request)`` with ``request.cluster = ClusterSettings(...)`` (``sam2pal propagate
--ray [ADDRESS]``) hands the targets to a pool of Ray actors. Each actor builds its model and its template
memories **once**, with the same calls as the single-process path
(``jobs.models.load_model``, ``jobs.templates.load_templates``, then
``engine.memory_propagation.iter_propagate``), so its results are the ones a local run gives.
Only the request (plain dataclasses: the ``ModelRequest`` and the ``TemplateSpec`` masks)
and image paths go to the actors; results come back as the journal's JSON (masks as RLE).
With ``ship_images`` the driver also sends each image's bytes, for workers that do not
see the driver's files.

The driver keeps the one loop of the single-process path (``jobs.propagation``): it
receives the results **in input order** (a bounded re-order window, :class:`RayQueue`), appends
each finished target to the journal (same run identity and target keys as a local run, and the
same resume rule, ``engine.memory_propagation.JournalResume``: a local run can resume a Ray run and the
other way round), and folds them into the predictions file and the store.

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
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator, Sequence

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine.control import CancelToken, ProgressCallback, ProgressReporter, is_cancelled
from descriptron_sam2pal.engine.results import Target, TargetResult
from descriptron_sam2pal.jobs.models import (
    BEETLE_DEMO_CHOICE,
    DEMO_CHOICE,
    ModelRequest,
    load_model,
    resolve_checkpoint,
)
from descriptron_sam2pal.jobs.templates import TemplateSpec, load_templates

if TYPE_CHECKING:  # torch loads only when a run starts
    from descriptron_sam2pal.engine.memory_propagation import JournalResume
    from descriptron_sam2pal.jobs.propagation import PropagateRequest

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
    """Where and how wide to run (``PropagateRequest.cluster``; the request's ``batch_size`` is
    the targets per call of an actor, default the engine's: 4 on a GPU, 1 on a CPU).
    ``address``: "auto" (``ray.init()``'s own rule: the cluster of ``$RAY_ADDRESS`` or one
    started with ``ray start`` on this machine, else a new local one), "local" (always a new
    local one) or a Ray address ("HOST:6379", "ray://HOST:10001"). ``workers``: actors
    (default: one per GPU; without GPUs one per 4 CPUs). ``ship_images``: send the image bytes
    to the actors (when they cannot read the driver's paths). ``cpus_per_worker``: CPU actors'
    share (default: the cluster's CPUs / workers). ``measure_memory``: at the end, ask every actor
    its peak memory (``PropagateOutcome.cluster_stats``; benchmarks/ray_scale.py)."""

    address: str | None = "auto"
    workers: int | None = None
    ship_images: bool = False
    cpus_per_worker: int | None = None
    measure_memory: bool = False


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

        from descriptron_sam2pal.engine.memory_propagation import TemplateMemory

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
        from descriptron_sam2pal.engine.memory_propagation import run_identity

        return run_identity(self.model, self.memory, confidence=self.confidence,
                            orientation_search=self.orientation_search)

    def describe(self) -> dict:
        from descriptron_sam2pal.engine.memory_propagation import default_batch_size

        return {"device": str(self.model.device), "image_size": self.model.image_size,
                "batch_size": self.batch_size or default_batch_size(self.model.device),
                "host": os.uname().nodename, "pid": os.getpid()}

    def peak_rss(self) -> int:
        return peak_rss_bytes()

    def segment(self, items: list[dict]) -> list[dict]:
        """Segment ``items`` ({"index", "path", "image_id", "structure_status", "key",
        "data": bytes or None}); returns per item {"index", "key", "result" (the journal's
        JSON) or "error" and "skipped"}."""
        from descriptron_sam2pal.engine.memory_propagation import iter_propagate, target_key
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


#: How long a Ray address may take to accept a connection before the run is refused.
REACH_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """UserError within ``timeout`` seconds when nothing accepts a connection at a Ray address
    ("HOST:PORT" or "ray://HOST:PORT"), naming the address and what to check."""
    import socket

    text = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray {address}: give the cluster's address as HOST:PORT (e.g. head-node:6379) or "
                        "ray://HOST:10001")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "no answer" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise UserError(
            f"cannot reach the Ray cluster at {address} ({why} within {timeout:g} s): check that "
            f"`ray start --head` runs on {host}, that the port is right ({port}; 6379 for HOST:6379, "
            "10001 for ray://) and that no firewall blocks it; or run --ray without an address for a "
            "local cluster"
        ) from None


def connect(address: str | None) -> bool:
    """Join (or start) the Ray cluster of ``address`` (see :class:`ClusterSettings`); True when
    this call started Ray (the caller shuts it down). A running ``ray.init`` is reused."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": False}
    if address not in (None, "", "auto", "local"):
        check_reachable(address)  # ray.init retries an address nobody answers for a long time
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


def portable(
    model: ModelRequest, templates: Sequence[TemplateSpec]
) -> tuple[ModelRequest, list[TemplateSpec]]:
    """The model request and templates with every file as an absolute path (a worker's working
    folder is not the driver's) and the default checkpoint resolved here, on the driver."""
    choice = resolve_checkpoint(model.choice)
    if choice not in (DEMO_CHOICE, BEETLE_DEMO_CHOICE):
        choice = os.path.abspath(choice)
    adapter = os.path.abspath(os.path.expanduser(model.adapter)) if model.adapter else None
    return (replace(model, choice=choice, adapter=adapter),
            [TemplateSpec(t.image_id, os.path.abspath(t.path), t.masks) for t in templates])


def start_workers(request: PropagateRequest, say: Callable[[str], None]) -> tuple[list, list[dict]]:
    """The actor pool for ``request`` (as wide as ``request.cluster`` says), each actor built and
    ready, and what each is (``PropagationWorker.describe``)."""
    ray = require_ray()
    n, resources = plan_workers(request.cluster or ClusterSettings())
    threads = None if resources.get("num_gpus") else int(resources["num_cpus"])
    actor = ray.remote(PropagationWorker).options(max_restarts=MAX_RESTARTS, max_task_retries=0, **resources)
    crash = os.environ.get(CRASH_ENV)
    model, templates = portable(request.model, request.templates)
    workers = [actor.remote(model, templates, request.confidence or request.orientation_search,
                            request.orientation_search, request.batch_size, threads,
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


def ray_targets(items: Sequence[Any]) -> list[Target]:
    """The request's targets as engine Targets; a UserError for an image held only in memory
    (the actors read files)."""
    from descriptron_sam2pal.engine.memory_propagation import as_target

    targets = [as_target(t) for t in items]
    for t in targets:
        if t.image is not None or t.path is None:
            raise UserError("a Ray cluster segments image files; save the images and give their paths")
    return targets


def iter_propagate_on_ray(request: PropagateRequest, journal_file: Path | None,
                          progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                          say: Callable[[str], None] = lambda text: None,
                          stats: dict | None = None) -> Iterator[TargetResult]:
    """Yield a ``TargetResult`` per target of ``request``, in input order, segmented by a Ray
    actor pool as ``request.cluster`` says (see the module docstring). The journal at
    ``journal_file`` is read (targets already in it are not redone:
    ``engine.memory_propagation.JournalResume``, the local loop's rule) and appended to here, on
    the driver. ``stats``, when given and the
    settings ask to ``measure_memory``, receives the actors' and the driver's peak memory at the end."""
    from descriptron_sam2pal.engine.memory_propagation import JournalResume

    ray = require_ray()
    settings = request.cluster or ClusterSettings()
    targets = ray_targets(request.targets)
    started = connect(settings.address)
    workers: list = []
    try:
        workers, where = start_workers(request, say)
        run = ray.get(workers[0].identity.remote())
        # Shipped images go with their keys: an actor cannot name the driver's file.
        resume = JournalResume(journal_file, run, targets, all_keys=settings.ship_images)
        if resume.n_done:
            say(f"{resume.n_done} of {len(targets)} image(s) already in the journal; "
                f"segmenting {len(targets) - resume.n_done} on the cluster")
        reporter = ProgressReporter("propagate", len(targets), progress, start_done=resume.n_done)
        queue = RayQueue(ray, workers, targets, resume, batch=min(d["batch_size"] for d in where),
                         ship_images=settings.ship_images, say=say)
        finished = yield from queue.in_order(reporter, cancel)
        if stats is not None and settings.measure_memory and finished:
            stats["worker_peak_rss"] = ray.get([w.peak_rss.remote() for w in workers])
            stats["driver_peak_rss"] = peak_rss_bytes()
            stats["workers"] = len(workers)
    finally:
        for w in workers:
            ray.kill(w)
        if started:
            ray.shutdown()


class RayQueue:
    """The driver's side of a Ray run: which targets go to which idle actor next (at most
    ``window`` targets ahead of the oldest unfinished one), the answers put back in input order,
    and what a failure means: a dead actor is waited for while Ray restarts it (given up after
    ``MAX_RESTARTS``), and the targets of a failed task are sent again, one by one, until they
    failed ``MAX_ATTEMPTS`` times; then each is reported like an unreadable image.

    ``workers`` is the caller's list: an actor given up is removed from it."""

    def __init__(self, ray: Any, workers: list, targets: Sequence[Target], resume: JournalResume, *,
                 batch: int, ship_images: bool, say: Callable[[str], None]) -> None:
        self.ray, self.workers, self.targets, self.resume = ray, workers, targets, resume
        self.batch, self.ship_images, self.say = batch, ship_images, say
        self.window = max(4 * batch * len(workers), 16)
        self.pending = deque(i for i in range(len(targets)) if not resume.done(i))
        self.retry: deque[int] = deque()  # targets whose task failed once: sent again, alone
        self.attempts: dict[int, int] = {}
        self.ready: dict[int, TargetResult] = {}
        self.in_flight: dict[Any, tuple[Any, list[int] | None]] = {}  # ref: (actor, targets or None: a ping)
        self.idle = list(workers)
        self.deaths = {id(w): 0 for w in workers}
        self.next_out = 0

    def in_order(self, reporter: ProgressReporter, cancel: CancelToken | None
                 ) -> Generator[TargetResult, None, bool]:
        """Every target's result in input order (the journal's first); returns False when
        cancelled before the last one, True after it."""
        n = len(self.targets)
        while self.next_out < n:
            done_now = 0
            while self.next_out < n and (self.resume.done(self.next_out) or self.next_out in self.ready):
                i = self.next_out
                r = self.resume.result(i) if self.resume.done(i) else self.ready.pop(i)
                self.next_out += 1
                done_now += 1
                yield r
            if done_now:
                reporter.report(self.next_out, message=str(self.targets[self.next_out - 1].path or ""))
            if self.next_out >= n:
                break
            if is_cancelled(cancel):
                return False
            self.dispatch()
            if not self.in_flight:
                if not self.workers:
                    raise UserError("every Ray worker died and could not be restarted; see the Ray logs "
                                    "(`ray logs`), fix the cause and run again with --resume")
                continue
            self.collect()
        return True

    def dispatch(self) -> None:
        """Give each idle actor a task: a retried target alone, else up to ``batch`` pending
        targets inside the window."""
        while self.idle and (self.retry or (self.pending and self.pending[0] < self.next_out + self.window)):
            if self.retry:
                chunk = [self.retry.popleft()]
            else:
                chunk = []
                while (
                    self.pending and len(chunk) < self.batch and self.pending[0] < self.next_out + self.window
                ):
                    chunk.append(self.pending.popleft())
            worker = self.idle.pop()
            self.in_flight[worker.segment.remote([self.item(i) for i in chunk])] = (worker, chunk)

    def item(self, i: int) -> dict:
        """What an actor gets of target ``i`` (``PropagationWorker.segment``)."""
        t = self.targets[i]
        data = None
        if self.ship_images:
            try:
                data = Path(t.path).read_bytes()
            except OSError:
                data = None  # the actor reports it unreadable, as a local run would
        return {
            "index": i,
            "path": os.path.abspath(t.path),
            "image_id": t.image_id,
            "key": self.resume.keys[i],
            "structure_status": t.structure_status,
            "data": data,
        }

    def collect(self) -> None:
        """Wait (up to a second) for a task to end and take in what it brought."""
        done_refs, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=1.0)
        for ref in done_refs:
            worker, chunk = self.in_flight.pop(ref)
            try:
                answers = self.ray.get(ref)
            except (self.ray.exceptions.RayError, OSError) as exc:
                self.failed_task(worker, chunk, exc)
                continue
            self.idle.append(worker)
            if chunk is not None:  # None: a restarted worker answered: it is ready again
                self.answered(answers)

    def answered(self, answers: list[dict]) -> None:
        """An actor's results (``PropagationWorker.segment``) ready to go out, and in the journal."""
        entries = []
        for a in answers:
            i = a["index"]
            t = self.targets[i]
            if "error" in a:  # worded with the path as given, as a local run words it
                error = a["error"].replace(os.path.abspath(t.path), str(t.path))
                self.ready[i] = TargetResult(
                    t.image_id, t.path, 0, 0, error=error, skipped=dict(a["skipped"])
                )
                continue
            r = TargetResult.from_json(a["result"])
            r.image_id, r.path, r.from_journal = t.image_id, t.path, False
            self.ready[i] = r
            if a["key"] is not None:
                entries.append((a["key"], r))
        self.resume.record(entries)

    def failed_task(self, worker: Any, chunk: list[int] | None, exc: Exception) -> None:
        """A task that raised: its actor is waited for (or given up) when it died, and its
        targets retried or, after ``MAX_ATTEMPTS``, reported failed."""
        died = isinstance(exc, self.ray.exceptions.RayActorError)
        if chunk is None or died:
            self.deaths[id(worker)] += died
            if self.deaths[id(worker)] > MAX_RESTARTS:
                self.workers.remove(worker)
                self.say(f"Ray: a worker died {self.deaths[id(worker)]} times; going on without it")
            else:  # wait until Ray has restarted it before giving it work again
                self.in_flight[worker.describe.remote()] = (worker, None)
        else:
            self.idle.append(worker)
        if chunk is None:
            return
        why = "the worker process died" if died else f"{type(exc).__name__}: {exc}"[:300]
        for i in chunk:
            self.attempts[i] = self.attempts.get(i, 0) + 1
            if self.attempts[i] >= MAX_ATTEMPTS:
                t = self.targets[i]
                self.ready[i] = TargetResult(
                    t.image_id,
                    t.path,
                    0,
                    0,
                    skipped=t.skipped,
                    error=f"the worker segmenting it failed {MAX_ATTEMPTS} times ({why})",
                )
            else:
                self.retry.append(i)
        self.say(f"Ray: a task of {len(chunk)} image(s) failed ({why.splitlines()[0]}); "
                 "retrying them on the next free worker")
