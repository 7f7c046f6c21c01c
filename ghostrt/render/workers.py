"""Who renders segments: in this process, or Ray actors that each load the swapper once and take segments
from the driver (plain actors + ray.wait with an index -> segment map, so a segment lost with its worker or
node is submitted again elsewhere; Ray's ActorPool never resubmits).

A processor spec is a small picklable recipe: `spec.key` names what it loads, `spec.load()` returns an object
with `stream(first_index)` (a fresh stateful process_batch/flush stream), `label`, `close()` and optionally
`generator` ((backend, precision) the manifest names).
"""

import os
import time
from dataclasses import dataclass, field

from ghostrt.errors import GhostError
from ghostrt.render import segments

RAY_PIN = "ray==2.60.0"
DEFAULT_RETRIES = 2           # times one segment may be submitted again after its worker died


@dataclass(frozen=True)
class SwapSpec:
    """The real swap (ghostrt.Swapper), loaded once per worker."""

    sources: tuple[str, ...]
    target_faces: tuple[str, ...] = ()
    faces: str = "largest"
    similarity: float = 0.15
    batch: int = 8
    detect_every: int = 1
    load_options: tuple[tuple[str, object], ...] = ()     # Swapper.load keywords (backend, precision, …)

    @property
    def key(self):
        return self

    def load(self):
        return _LoadedSwapper(self)


class _LoadedSwapper:
    def __init__(self, spec: SwapSpec):
        import ghostrt

        if not hasattr(ghostrt, "Swapper"):
            raise GhostError("ghostrt.Swapper is not available in this build (the library API is missing)")
        self.spec = spec
        self.swapper = ghostrt.Swapper.load(**dict(spec.load_options), log=lambda *a, **k: None)
        self.who = self.swapper.identity(list(spec.sources))
        self.targets = [self.swapper.identity([p]) for p in spec.target_faces] or None
        self.standin = list(self.swapper.standin_models)
        self.label = self.swapper.label(1, operation="video face swap")
        gen = self.swapper.choices["generator"]
        self.generator = (gen.backend, gen.precision)

    def stream(self, first_index: int):
        s = self.spec
        stream = self.swapper.stream(self.who, targets=self.targets, faces=s.faces, similarity=s.similarity,
                                     batch=s.batch, detect_every=s.detect_every, smoothing=True)
        stream.first_index = first_index
        return stream

    def close(self) -> None:
        self.swapper.close()


@dataclass
class SegmentTask:
    """One segment of one job, as sent to a worker (the worker opens the input itself)."""

    job: int
    info: object                   # video_io.VideoProbe
    scan: segments.Scan
    segment: segments.Segment
    spec: object
    suffix: str
    crf: int
    batch: int
    attempts: int = 0
    marks: object = None           # runtime.io.provenance.Provenance.marks_only(): the frames' marks, no signer


def render_task(loaded_cache: dict, task: SegmentTask, worker: str = "local") -> segments.EncodedSegment:
    loaded = loaded_cache.get(task.spec.key)
    if loaded is None:
        loaded = loaded_cache[task.spec.key] = task.spec.load()
    stream = loaded.stream(task.segment.warm_start)
    try:
        result = segments.render_segment(task.info, task.scan, task.segment, stream, task.suffix, task.crf,
                                         task.batch, marks=task.marks, label=getattr(loaded, "label", None))
    finally:
        getattr(stream, "close", lambda: None)()
    result.worker = worker
    result.label = getattr(loaded, "label", None)
    result.generator = getattr(loaded, "generator", None)
    result.standin = tuple(getattr(loaded, "standin", ()))
    return result


class LocalPool:
    """Segments rendered one after another in this process (the tests' and a laptop's pool)."""

    workers = 1

    def __init__(self):
        self.cache: dict = {}
        self.resubmitted = 0
        self.started_seconds = 0.0

    def run(self, tasks: list[SegmentTask], on_done=None) -> list[segments.EncodedSegment]:
        done = []
        for task in tasks:
            done.append(render_task(self.cache, task))
            if on_done:
                on_done(done[-1])
        return done

    def close(self) -> None:
        for loaded in self.cache.values():
            getattr(loaded, "close", lambda: None)()
        self.cache.clear()


def _ray():
    try:
        import ray
    except ImportError:
        raise GhostError(f"--ray needs Ray: pip install 'ghostrt[cluster]' ({RAY_PIN})") from None
    return ray


def _worker_class(ray):
    @ray.remote(max_restarts=0, max_task_retries=0)
    class SegmentWorker:
        """Holds the loaded swapper(s) for the life of the actor: one per GPU, or CPU workers."""

        def __init__(self):
            import socket

            self.cache: dict = {}
            self.name = f"{socket.gethostname()}:{os.getpid()}"

        def ready(self, spec) -> str:
            if spec is not None and spec.key not in self.cache:
                self.cache[spec.key] = spec.load()
            return self.name

        def render(self, task: SegmentTask):
            return render_task(self.cache, task, self.name)

    return SegmentWorker


@dataclass
class RayPool:
    """Ray actors rendering segments; `address` None or "auto" starts a local Ray in this process."""

    address: str | None = None
    workers: int | None = None     # None: one per GPU in the cluster, else 2 CPU workers
    gpus_per_worker: float = 0
    cpus_per_worker: float = 1
    retries: int = DEFAULT_RETRIES
    in_flight_per_worker: int = 2
    log: object = print
    started_seconds: float = 0.0
    resubmitted: int = 0
    _actors: list = field(default_factory=list)
    _own_ray: bool = False

    def start(self, spec) -> None:
        ray = _ray()
        began = time.perf_counter()
        if not ray.is_initialized():
            if self.address in (None, "auto", "local"):
                cpus = max(os.cpu_count() or 1, int((self.workers or 2) * self.cpus_per_worker))
                ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
                self._own_ray = True
            else:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if self.workers is None:
            self.workers = gpus or 2
        if gpus and not self.gpus_per_worker:
            self.gpus_per_worker = 1
        cls = _worker_class(ray)
        actors = [cls.options(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                              scheduling_strategy="SPREAD").remote() for _ in range(self.workers)]
        self._actors = []
        for actor, ref in [(a, a.ready.remote(spec)) for a in actors]:
            try:
                self._actors.append((actor, ray.get(ref)))
            except Exception as err:        # a node that cannot run the backend takes no work
                self.log(f"ghostrt render: a worker could not load the swapper and takes no work "
                         f"({str(err).strip().splitlines()[-1][:160]})")
        if not self._actors:
            raise GhostError("no Ray worker could load the swapper (see the lines above)")
        self.started_seconds = time.perf_counter() - began

    def run(self, tasks: list[SegmentTask], on_done=None) -> list[segments.EncodedSegment]:
        ray = _ray()
        from ray.exceptions import RayTaskError

        queue = list(tasks)
        in_flight: dict = {}         # object ref -> (task, actor)
        load = {id(a): 0 for a, _ in self._actors}
        done = []
        limit = self.in_flight_per_worker
        try:
            while queue or in_flight:
                for actor, _ in list(self._actors):
                    while queue and load.setdefault(id(actor), 0) < limit:
                        task = queue.pop(0)
                        in_flight[actor.render.remote(task)] = (task, actor)
                        load[id(actor)] += 1
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
                for ref in ready:
                    task, actor = in_flight.pop(ref)
                    load[id(actor)] -= 1
                    try:
                        result = ray.get(ref)
                    except RayTaskError as err:
                        cause = err.as_instanceof_cause()
                        if isinstance(cause, GhostError):
                            raise GhostError(str(cause).strip().splitlines()[-1]) from None
                        raise
                    except Exception as err:           # the worker or its node died: render it elsewhere
                        self._lost(actor, task, err, queue)
                        continue
                    done.append(result)
                    if on_done:
                        on_done(result)
        except BaseException:
            for ref in in_flight:
                ray.cancel(ref, force=True)
            raise
        return done

    def _lost(self, actor, task: SegmentTask, err, queue: list) -> None:
        self._actors = [(a, n) for a, n in self._actors if a is not actor]
        if task.attempts >= self.retries:
            raise GhostError(f"segment {task.segment.index} failed {task.attempts + 1} times; last: "
                             f"{type(err).__name__}")
        task.attempts += 1
        self.resubmitted += 1
        self.log(f"ghostrt render: a worker was lost ({type(err).__name__}); segment {task.segment.index} "
                 "resubmitted")
        queue.insert(0, task)
        if not self._actors:
            self._replace(task.spec)

    def _replace(self, spec) -> None:
        """Every worker is gone: start one more where Ray can place it (a live node)."""
        ray = _ray()
        actor = _worker_class(ray).options(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker).remote()
        try:
            self._actors.append((actor, ray.get(actor.ready.remote(spec), timeout=120)))
        except Exception as err:
            raise GhostError(f"no Ray worker is left to render on ({type(err).__name__})") from None

    def close(self) -> None:
        if not self._actors and not self._own_ray:
            return
        ray = _ray()
        for actor, _ in self._actors:
            ray.kill(actor)
        self._actors = []
        if self._own_ray:
            ray.shutdown()
            self._own_ray = False
