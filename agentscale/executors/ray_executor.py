"""The `ray` executor: items answered by worker actors on a Ray cluster, recorded by the driver.

How an item travels (see `docs/scale.md` for the user's view):
1. the driver probes the response cache (:mod:`agentscale.executors._probe`); an item the cache
   answers completely runs in the driver, as with the local executor;
2. otherwise the item, with the cache entries it may replay, goes to the least busy worker actor
   (async actors: each keeps `concurrency` items in flight, like the local event loop);
3. the worker answers it with the same `Graph.arun`, leaving each paid call in the outbox and
   returning the item's rows with its result;
4. the driver drains the outbox into the spend ledger and cache, then writes the item's rows:
   SQLite keeps a single writer, the driver;
5. when the driver traces (an observer is installed, e.g. `--trace otlp`), the worker has recorded
   the item's spans as plain data (:mod:`agentscale.tracing.recording`) and the driver replays them
   into its observer, under its current span (the run's), with the worker's times moved inside the
   window sent → returned if the worker's clock disagrees. The cache probe is not traced.

Fault tolerance: a worker actor that dies is restarted by Ray (`max_restarts`), on another node if
its node is gone; the items it had in flight are retried by the driver on another worker, at most
`max_attempts` times each. Only a returned result is recorded, so a retried item has one set of rows;
the calls its lost attempt paid for reached the ledger through the outbox (and the cache, so the
retry replays them) unless they were still in flight when the worker died.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from agentscale.errors import AgentScaleError
from agentscale.executors._outbox import Outbox
from agentscale.executors._probe import CacheProbe
from agentscale.executors._worker import WORKER_ENV, ItemOutcome, ItemTask, ItemWorker
from agentscale.executors.config import ExecutorConfig
from agentscale.storage.db import Store
from agentscale.storage.tables import NodeCall, Run, RunItem
from agentscale.tracing.hooks import muted
from agentscale.tracing.recording import record_request, replay

if TYPE_CHECKING:
    from agentscale.graphs.result import RunResult
    from agentscale.runtime.graph import Graph

INSTALL_HINT = "pip install 'agentscale[ray]'"
MAX_ATTEMPTS = 3  # per item: the first try and two retries after a worker died
MAX_RESTARTS = 4  # per worker actor
RESTART_WAIT_S = 120.0  # how long items wait when every worker is down
OUTBOX_TRIES = 5  # drains of an unreachable outbox, ~6 s in all, before its calls wait for the next one
CONNECT_TIMEOUT_S = 5.0  # a cluster address whose GCS does not accept a connection by then is refused
_ROW_TYPES: dict[str, type[Run | NodeCall | RunItem]] = {"Run": Run, "NodeCall": NodeCall, "RunItem": RunItem}


def import_ray() -> ModuleType:
    """Ray, or the one-line error a user can act on."""
    try:
        import ray
    except ImportError:
        raise AgentScaleError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@dataclass
class DriverStats:
    """Where the driver's time goes per result (the benchmark reports these)."""

    results: int = 0  # items answered by workers and recorded
    in_driver: int = 0  # items the cache answered completely (run in the driver)
    retries: int = 0  # attempts lost with their worker
    outbox_errors: int = 0  # drains that could not reach the outbox
    probe_s: float = 0.0  # cache probes (wall time: includes waiting for the event loop)
    write_s: float = 0.0  # SQLite: paid calls drained from the outbox, then the item's rows
    trace_s: float = 0.0  # replaying the workers' recorded spans into the driver's observer (tracing on)

    def write_ms_per_result(self) -> float:
        return 1000 * self.write_s / max(1, self.results)


_ADDRESS = re.compile(r"(ray://)?[^\s:/@]+(:\d+)?")  # host:port (a GCS), ray://host[:port] (Ray Client)


def _refuse_a_dead_cluster(address: str | None) -> None:
    """A cluster address (`host:port`, or `auto`: `RAY_ADDRESS`, else the cluster `ray start` last
    recorded) whose GCS does not accept a connection: `ray.init` retried it for minutes, printing
    warnings and nothing else (a cluster stopped long ago stays recorded in /tmp/ray)."""
    shaped = _ADDRESS.fullmatch(address or "")
    if address not in (None, "auto", "local") and (shaped is None or not (shaped[1] or shaped[2])):
        # "atuo", "http://...": a failed run stored, whose resume failed the same way with the address kept
        raise AgentScaleError(
            f"--ray-address {address!r} is no Ray address: give host:port (a cluster's GCS, as `ray start --head` "
            "prints it), ray://host:10001 (Ray Client), or auto (the cluster on this host)"
        )
    system_temp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"  # as Ray finds it
    recorded = Path(system_temp) / "ray" / "ray_current_cluster"
    target, source = address, f"--ray-address {address}"
    if address == "auto":
        if os.environ.get("RAY_ADDRESS"):
            target, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
        elif recorded.is_file():
            target, source = recorded.read_text().strip(), f"the cluster recorded in {recorded}"
    host, _, port = (target or "").rpartition(":")
    if not host or not port.isdigit() or "://" in host:  # `local`, `ray://` (Ray Client says it fails), none
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise AgentScaleError(
            f"no Ray cluster answers at {target} ({source}: {exc}); start one with `ray start --head`, "
            "or leave out --ray-address to run on a new local Ray"
        ) from None


@contextlib.contextmanager
def _keeping_the_sigterm_handler() -> Iterator[None]:
    """`ray.init` puts its own SIGTERM handler in (exit with status 15): SIGTERM of an eval then exited
    15 with no resume command, no `--json` line and a crash dump, where the command's own handler
    stops it as Ctrl-C does (exit 130, stored interrupted, the resume command said)."""
    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


class RayExecutor:
    """Connects to (or starts) Ray on `start()`; `workers` actors, one per cluster CPU by default."""

    name = "ray"

    def __init__(
        self, address: str | None = None, workers: int | None = None, max_attempts: int = MAX_ATTEMPTS
    ) -> None:
        if workers is not None and workers < 1:
            raise AgentScaleError("--ray-workers must be at least 1")
        self._ray = import_ray()
        if not self._ray.is_initialized():  # before a caller stores its run: each typo left a failed one
            _refuse_a_dead_cluster(address)
        self.address = address
        self.workers = workers
        self.max_attempts = max_attempts
        self.stats = DriverStats()
        self._actors: list[Any] = []
        self._load: dict[int, int] = {}
        self._down: dict[int, asyncio.Future[None] | None] = {}  # workers lost recently: their revival check
        self._dead: set[int] = set()  # workers Ray will not restart again
        self._outbox: Any = None
        self._outbox_id: str | None = None
        self.outbox_node: str | None = None  # the Ray node the outbox runs on (the driver's)
        self._owns_ray = False
        self._start_lock: asyncio.Lock | None = None
        self._probes: weakref.WeakKeyDictionary[Graph, CacheProbe] = weakref.WeakKeyDictionary()
        errors = self._ray.exceptions
        # the worker process is gone (killed, crashed, its node lost, or stopped by Ray's memory monitor), or
        # its node went before the driver fetched the result (stored there when large)
        self._lost_worker_errors = (
            errors.RayActorError,
            errors.WorkerCrashedError,
            errors.OutOfMemoryError,
            errors.ObjectLostError,
            errors.NodeDiedError,
        )

    # lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._actors:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._actors:
                await self._start()

    async def _start(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            _refuse_a_dead_cluster(self.address)
            try:
                with _keeping_the_sigterm_handler():
                    ray.init(
                        # no address: a new local Ray, never a stale cluster `ray start` left recorded in /tmp/ray
                        address=self.address or "local",
                        include_dashboard=False,
                        log_to_driver=False,  # worker output would land in `--json` stdout
                        logging_level="WARNING",
                    )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a new local cluster"
                elsewhere = " (a resume takes --ray-address ADDRESS, or --executor local, to run elsewhere)"
                raise AgentScaleError(
                    f"cannot start or reach Ray at {where}: {exc}" + (elsewhere if self.address else "")
                ) from None
            self._owns_ray = True
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        count = self.workers or max(1, int(cpus))
        # more workers than CPUs is fine for I/O-bound items: each asks for its share of the CPUs
        share = round(min(1.0, cpus / count), 4)
        # named, so workers find it by name: an actor handle as a constructor argument would live in
        # the object store, and a worker restarted after it was freed could not start
        outbox_name = f"agentscale-outbox-{uuid.uuid4().hex[:12]}"
        driver_node, placement = self._on_driver_node()
        self._outbox = ray.remote(num_cpus=0, name=outbox_name, **placement)(Outbox).remote()
        self._outbox_id = self._outbox._actor_id.hex()
        self.outbox_node = await self._outbox.node_id.remote()
        if driver_node is not None and self.outbox_node != driver_node:  # a hard pin makes this impossible
            raise AgentScaleError(f"Ray placed the outbox on node {self.outbox_node}, not on the driver's")
        worker = ray.remote(ItemWorker).options(
            num_cpus=share,
            max_restarts=MAX_RESTARTS,
            max_task_retries=0,  # the driver retries items itself, on another worker
            max_concurrency=1000,  # async actor: items in flight are bounded by the driver
            runtime_env={"env_vars": WORKER_ENV},
        )
        self._actors = [worker.remote(outbox_name) for _ in range(count)]
        self._load = {index: 0 for index in range(count)}
        self._down, self._dead = {}, set()  # of the actors closed before, if any
        await asyncio.gather(*(actor.pid.remote() for actor in self._actors))  # started and warm

    def _on_driver_node(self) -> tuple[str | None, dict[str, Any]]:
        """The driver's node and the options that pin the outbox to it.

        The pin is hard: the outbox holds paid calls not yet recorded and must not die with another
        node. A soft pin is not enough: for an actor that asks for no resources (`num_cpus=0`) Ray
        ignores a soft node affinity and picks any node, and losing that node then lost the outbox
        and with it every item (no worker could leave its paid calls any more).
        """
        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            node = str(self._ray.get_runtime_context().get_node_id())
        except Exception:  # a Ray Client driver is not on a node
            return None, {}
        return node, {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}

    def worker_pids(self) -> list[int]:
        """Process ids of the worker actors (tests kill one)."""
        return [int(pid) for pid in self._ray.get([actor.pid.remote() for actor in self._actors])]

    def worker_nodes(self) -> list[str]:
        """The Ray node each worker actor runs on."""
        return [str(node) for node in self._ray.get([actor.node_id.remote() for actor in self._actors])]

    def config(self) -> ExecutorConfig:
        return ExecutorConfig("ray", address=self.address, workers=self.workers)

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        if self._outbox is not None:
            self._ray.kill(self._outbox)
        self._actors, self._outbox = [], None
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False

    # the executor interface -------------------------------------------------------------------
    def slots(self, concurrency: int) -> int:
        return concurrency * max(1, len(self._actors))

    def check(self, graph: Graph) -> None:
        if graph.runtime.memory is not None:
            raise AgentScaleError(
                "--executor ray cannot run graphs with a behavior handbook (memory:, --handbook) yet: "
                "the handbook lives in the driver's database; use --executor local"
            )

    async def run_item(
        self, graph: Graph, question: str, *, run_id: str | None, item_key: str, record: bool
    ) -> RunResult:
        self.check(graph)
        await self.start()
        store = graph.store
        settings = graph.gateway.settings if store is not None else replace(graph.gateway.settings, cache=False)
        task = ItemTask(
            graph.to_yaml(),
            graph.runtime.answer_format,
            settings,
            question,
            run_id,
            item_key,
            record=record and store is not None,
            trace=record_request(),  # None unless this process traces
        )
        lost: set[int] = set()
        for _ in range(self.max_attempts):
            cache = await self._probe(graph, question)
            if cache is None:  # the cache answers every call: nothing to ship
                self.stats.in_driver += 1
                return await graph.arun(question, run_id=run_id, item_key=item_key, record=record)
            index = await self._pick(lost)
            self._load[index] += 1
            sent_ns = time.time_ns()
            ref = self._actors[index].run_item.remote(replace(task, cache=tuple(cache)))
            try:
                outcome: ItemOutcome = await ref
            except asyncio.CancelledError:  # an interrupted eval makes no further calls behind its back
                self._ray.cancel(ref)
                raise
            except self._ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, AgentScaleError):  # said as the local executor says it, in one line
                    raise exc.cause from None  # (Ray's form adds its remote traceback, in colour: ~50 lines)
                if not isinstance(exc.cause, self._lost_worker_errors):  # the graph itself raised
                    raise exc.as_instanceof_cause() from None
                self.stats.retries += 1
                if self._is_outbox(exc.cause):  # the worker is fine: its paid calls could not be left
                    self._check_outbox(exc.cause)
                    continue
                lost.add(index)  # the worker lost its node while answering: retry elsewhere
                self._down.setdefault(index, None)
                continue
            except self._lost_worker_errors:
                lost.add(index)
                self._down.setdefault(index, None)
                self.stats.retries += 1
                continue
            finally:
                self._load[index] -= 1
                await self._drain_to_the_end(store)  # the attempt's paid calls, finished or not
            self._record(store, outcome)
            if outcome.spans:
                self._replay(outcome, (sent_ns, time.time_ns()))
            return outcome.result
        raise AgentScaleError(
            f"item {item_key}: {self.max_attempts} attempts lost (its worker died or could not reach the outbox); "
            "giving up"
        )

    # driver side ------------------------------------------------------------------------------
    async def _probe(self, graph: Graph, question: str) -> list[dict[str, Any]] | None:
        if graph.store is None or not graph.gateway.settings.cache:
            return []
        started = time.perf_counter()
        probe = self._probes.get(graph)
        if probe is None:
            probe = self._probes[graph] = CacheProbe(graph)
        try:
            with muted():  # a dry run of the item against the cache: not the user's work
                return await probe.entries(question)
        finally:
            self.stats.probe_s += time.perf_counter() - started

    async def _pick(self, lost: set[int]) -> int:
        """The least busy live worker, avoiding those that lost this item before (when others exist).

        A worker that lost an item is left out until it answers a ping again (Ray restarts it); if
        every worker is down, wait for one to come back.
        """
        deadline = time.monotonic() + RESTART_WAIT_S
        while True:
            for index, check in list(self._down.items()):
                if check is None or check.done():
                    self._down[index] = asyncio.ensure_future(self._revive(index))
            live = [i for i in self._load if i not in self._down]
            candidates = [i for i in live if i not in lost] or live
            if candidates:
                return min(candidates, key=lambda i: self._load[i])
            if self._dead >= self._load.keys():  # Ray says so at once: waiting the full 120 s said nothing more
                raise AgentScaleError(
                    f"every Ray worker died for good (Ray restarted each up to {MAX_RESTARTS} times): "
                    "see the Ray logs for why (memory, a node lost)"
                )
            if time.monotonic() > deadline:
                raise AgentScaleError(f"no Ray worker came back within {RESTART_WAIT_S:.0f} s")
            await asyncio.sleep(0.2)

    async def _revive(self, index: int) -> None:
        """Ping a lost worker; once it answers (restarted by Ray) it takes items again."""
        try:
            await self._actors[index].pid.remote()
        except self._ray.exceptions.ActorDiedError:
            self._dead.add(index)  # out of restarts: stays down
            return
        except self._ray.exceptions.RayActorError:
            await asyncio.sleep(0.5)  # restarting: the next pick checks again
            return
        self._down.pop(index, None)

    def _is_outbox(self, error: BaseException) -> bool:
        return isinstance(error, self._ray.exceptions.RayActorError) and error.actor_id == self._outbox_id

    def _check_outbox(self, error: BaseException) -> None:
        """Stop the run when the outbox is gone for good: no item could leave its paid calls any more."""
        if isinstance(error, self._ray.exceptions.ActorDiedError):
            raise AgentScaleError(
                "the outbox actor (paid calls on their way to the spend ledger) died with its process or "
                "the driver's node; calls it held are not in the ledger. Resume the run to go on"
            ) from None

    async def _drain_to_the_end(self, store: Store | None) -> None:
        """`_drain`, finished even when the item is cancelled meanwhile, then the cancel goes on. An
        interrupted eval cancels its items twice (Ctrl-C, then its clean-up); the second cancel landed
        in this drain: the outbox had handed over its paid calls, and no ledger row or cache entry was
        written for them, so `--resume` paid for them again (4 of 4 such calls in a test). Bounded: the
        drain gives up on an unreachable outbox after `OUTBOX_TRIES`."""
        drain = asyncio.ensure_future(self._drain(store))
        cancelled = False
        while not drain.done():
            try:
                await asyncio.shield(drain)
            except asyncio.CancelledError:
                cancelled = True
        drain.result()
        if cancelled:
            raise asyncio.CancelledError

    async def _drain(self, store: Store | None) -> None:
        calls = None
        for attempt in range(OUTBOX_TRIES):
            try:
                calls = await self._outbox.drain.remote()
                break
            except self._lost_worker_errors as exc:
                self.stats.outbox_errors += 1
                self._check_outbox(exc)
                await asyncio.sleep(0.2 * 2**attempt)  # unreachable for now (ActorUnavailableError): try again
        else:
            return  # still unreachable: its calls wait for the next drain
        if store is not None and calls:
            started = time.perf_counter()
            store.record_calls(calls)  # (cache entry, spend row) column values, as the workers' gateways built them
            self.stats.write_s += time.perf_counter() - started

    def _replay(self, outcome: ItemOutcome, window: tuple[int, int]) -> None:
        """The worker's spans of this item, as if it had run here (roots under the current span)."""
        started = time.perf_counter()
        replay(outcome.spans, window=window, attributes={"worker_pid": outcome.pid})
        self.stats.trace_s += time.perf_counter() - started

    def _record(self, store: Store | None, outcome: ItemOutcome) -> None:
        started = time.perf_counter()
        if store is not None and outcome.rows:
            store.insert([(_ROW_TYPES[name], values) for name, values in outcome.rows])
        self.stats.results += 1
        self.stats.write_s += time.perf_counter() - started
