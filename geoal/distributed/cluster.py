"""Ray plumbing: join or start a cluster, size an actor pool, stream tasks through it.

Ray is imported here, inside functions, and nowhere else in geoal: without it,
``--engine ray`` fails with one line that says how to install it.

:class:`WorkerPool` holds one actor per GPU (or CPU slot), each of which loads
the model once. The driver keeps at most ``depth`` tasks queued per actor, so
memory on both sides stays bounded whatever the number of chips, and hands
results back as they finish (in any order). An actor whose process dies is
restarted by Ray (``max_restarts``) and its unfinished tasks are run again
(``max_task_retries``); a task's result reaches the driver once.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from geoal.errors import ConfigError, GeoalError

if TYPE_CHECKING:
    from geoal.distributed.worker import ModelSpec

T = TypeVar("T")

INSTALL_HINT = "pip install 'geoal[ray]'"

# Settings a worker process needs before it imports ultralytics (offline, settings folder).
FORWARDED_ENV = (
    "YOLO_OFFLINE",
    "YOLO_CONFIG_DIR",
    "YOLO_VERBOSE",
    "GEOAL_BACKEND",
    "GEOAL_CACHE_DIR",
)


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray: which cluster, how many actors, what each one reserves.

    ``address``: None starts Ray on this machine for the run; 'auto' joins the
    cluster this machine belongs to; 'ray://HOST:10001' joins one through Ray
    Client. ``workers``: actors (None: one per ``gpus_per_worker`` GPUs of the
    cluster, or one per ``cpus_per_worker`` CPUs when it has none).
    ``gpus_per_worker``: None = 1 if the cluster has GPUs, else 0 (CPU actors).
    ``batches_per_task``: batches one actor call reads and scores (more: less
    overhead per call; fewer: finer streaming, less work redone after a failure). ``num_cpus``: CPUs of a Ray started here (None: all).
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    batches_per_task: int = 4
    depth: int = 2  # tasks queued per actor: the next one is ready when one finishes
    max_restarts: int = 3
    max_task_retries: int = 3
    start_timeout_s: float = 600.0
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--ray-workers must be at least 1, got {self.workers}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ConfigError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker}")
        if self.batches_per_task < 1 or self.depth < 1:
            raise ConfigError("batches_per_task and depth must be at least 1")


@dataclass(frozen=True)
class ActorPlan:
    """How many actors, and the resources each reserves."""

    workers: int
    gpus: float
    cpus: float

    @property
    def threads(self) -> int:
        """torch threads of a CPU actor (its whole CPUs); 0 for a GPU actor (torch's default)."""
        return 0 if self.gpus else max(1, int(self.cpus))


def require_ray() -> ModuleType:
    """The ``ray`` module, or a GeoalError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise GeoalError(
            f"--engine ray needs Ray, which is not installed: {INSTALL_HINT} "
            "(or use the local engine, or --shard I/N on a scheduler without Ray)"
        ) from None
    return ray


@contextmanager
def ray_session(opts: RayOptions) -> Iterator[ModuleType]:
    """Ray, connected: joins ``opts.address`` or starts Ray here; shuts down what it started.

    An already initialised Ray (a notebook, the tests) is used as it is.
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        try:
            if opts.address:
                ray.init(address=opts.address, **common)
            else:
                ray.init(num_cpus=opts.num_cpus, include_dashboard=False, **common)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            where = opts.address or "this machine"
            raise GeoalError(
                f"cannot start or join Ray at {where}: {exc} "
                "(--address auto joins the cluster of this machine, started with 'ray start'; "
                "ray://HOST:10001 joins a remote one)"
            ) from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def plan_actors(resources: dict[str, float], opts: RayOptions) -> ActorPlan:
    """Actors and per-actor resources for a cluster with ``resources`` ({'CPU': n, 'GPU': m})."""
    total_gpus = float(resources.get("GPU", 0.0))
    total_cpus = float(resources.get("CPU", 0.0))
    gpus = opts.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if total_gpus >= 1 else 0.0
    if gpus > total_gpus:
        raise ConfigError(
            f"--gpus-per-worker {gpus:g}: the Ray cluster has {total_gpus:g} GPU(s); "
            "give --gpus-per-worker 0 for CPU workers"
        )
    if opts.cpus_per_worker > total_cpus:
        raise ConfigError(
            f"--cpus-per-worker {opts.cpus_per_worker:g}: the Ray cluster has {total_cpus:g} CPU(s)"
        )
    if opts.workers is not None:
        workers = opts.workers
    elif gpus > 0:
        workers = int(total_gpus // gpus)
    else:
        workers = int(total_cpus // opts.cpus_per_worker)
    return ActorPlan(max(1, workers), gpus, opts.cpus_per_worker)


def forwarded_env() -> dict[str, str]:
    """The environment settings workers apply before importing ultralytics."""
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    env.setdefault("YOLO_OFFLINE", "1")
    return env


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """A finished task: its value, or the GeoalError it raised on the worker."""

    task: T
    value: Any
    error: GeoalError | None = None


class WorkerPool:
    """Ray actors of ``actor_class(*args)``, fed tasks with bounded in-flight work.

    The actor class is a plain class (no Ray in it); the pool makes it a Ray
    actor with the plan's resources and restart policy. Actors join the pool as
    they become ready, so a cluster that grows (autoscaling) is used.
    """

    def __init__(
        self,
        ray: ModuleType,
        actor_class: type,
        args: tuple[Any, ...],
        plan: ActorPlan,
        opts: RayOptions,
    ) -> None:
        self.ray = ray
        self.opts = opts
        self.plan = plan
        remote = ray.remote(actor_class).options(
            num_cpus=self.plan.cpus,
            num_gpus=self.plan.gpus,
            max_restarts=opts.max_restarts,
            max_task_retries=opts.max_task_retries,
        )
        self.actors = [remote.remote(*args) for _ in range(self.plan.workers)]
        self._probes = {actor.ready.remote(): i for i, actor in enumerate(self.actors)}
        self._ready: list[int] = []
        self._started = time.monotonic()

    def run(self, method: str, tasks: Iterable[T]) -> Iterator[Outcome[T]]:
        """Run ``actor.method(task)`` for every task; yield outcomes as they finish."""
        ray = self.ray
        todo = iter(tasks)
        exhausted = False
        load = [0] * len(self.actors)
        in_flight: dict[Any, tuple[int, T]] = {}
        while True:
            while not exhausted and self._ready:
                i = min(self._ready, key=load.__getitem__)
                if load[i] >= self.opts.depth:
                    break
                task = next(todo, None)
                if task is None:
                    exhausted = True
                    break
                in_flight[getattr(self.actors[i], method).remote(task)] = (i, task)
                load[i] += 1
            if exhausted and not in_flight:
                return
            waiting = [*in_flight, *self._probes]
            timeout = None if self._ready else self._start_time_left()
            done, _ = ray.wait(waiting, num_returns=1, timeout=timeout)
            if not done:
                raise GeoalError(
                    f"no Ray worker started within {self.opts.start_timeout_s:.0f} s: the cluster "
                    f"has no free {self._wants()} for one worker ({ray.cluster_resources()}); "
                    "lower --gpus-per-worker / --cpus-per-worker or add nodes"
                )
            ref = done[0]
            if ref in self._probes:
                index = self._probes.pop(ref)
                self._get(ref)
                self._ready.append(index)
                continue
            index, task = in_flight.pop(ref)
            load[index] -= 1
            try:
                value = self._get(ref)
            except GeoalError as exc:
                yield Outcome(task, None, exc)
                continue
            yield Outcome(task, value)

    def _get(self, ref: Any) -> Any:
        """ray.get, with a worker's GeoalError re-raised as itself and a lost worker explained."""
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return self.ray.get(ref)
        except RayTaskError as exc:
            if isinstance(exc.cause, GeoalError):
                raise exc.cause from None
            raise
        except RayActorError as exc:
            cause = _creation_error(exc)
            if cause:
                raise GeoalError(f"a Ray worker could not start: {cause}") from None
            raise GeoalError(
                f"a Ray worker died and was restarted {self.opts.max_restarts} times: "
                f"{str(exc).splitlines()[0]}; what was finished is saved, "
                "run the command again to resume"
            ) from None

    def _start_time_left(self) -> float:
        return max(0.0, self.opts.start_timeout_s - (time.monotonic() - self._started))

    def _wants(self) -> str:
        gpus = f"{self.plan.gpus:g} GPU and " if self.plan.gpus else ""
        return f"{gpus}{self.plan.cpus:g} CPU"

    def close(self) -> None:
        """Stop the actors."""
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.actors = []


@contextmanager
def actor_pool(
    opts: RayOptions, actor_class: type, spec: ModelSpec, params: Any
) -> Iterator[WorkerPool]:
    """A pool of ``actor_class(spec, params, env)`` actors sized for the cluster; closed on exit.

    Joins or starts Ray (:func:`ray_session`); each actor loads ``spec``'s model on the
    GPU or CPU threads the plan gives it.
    """
    with ray_session(opts) as ray:
        plan = plan_actors(ray.cluster_resources(), opts)
        spec = replace(spec, gpu=plan.gpus > 0, threads=plan.threads)
        pool = WorkerPool(ray, actor_class, (spec, params, forwarded_env()), plan, opts)
        try:
            yield pool
        finally:
            pool.close()


def _creation_error(exc: BaseException) -> str | None:
    """The message of the exception an actor's constructor raised, if that is why it died."""
    text = str(exc)
    if "error raised in its creation task" not in text:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else text
    match = re.match(r"^[\w.]+(?:Error|Exception): (.*)$", last)  # 'geoal.errors.ModelError: ...'
    return match[1] if match else last
