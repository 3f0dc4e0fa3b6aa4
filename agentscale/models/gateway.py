"""The one way out to models: litellm calls with retries, timeouts, concurrency limits and a cache.

Every call of every node goes through :class:`Gateway`, so caching, retries and spend accounting
behave the same for hosted APIs, local vLLM servers and the simulated population.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from agentscale.errors import AgentScaleError, ModelCallError, StorageError
from agentscale.graphs.spec import DEFAULT_MAX_TOKENS
from agentscale.models._reply import (
    MalformedReply,
    at_interpreter_exit,
    check_reply,
    raised_before_sending,
    refused_connection,
    reply_text_and_usage,
    server_asked_wait_s,
)
from agentscale.models.budget import CallTime
from agentscale.models.cost import call_usd, model_flops
from agentscale.models.endpoints import Endpoint, resolve_endpoint
from agentscale.models.litellm_loader import get_litellm, skipping_unread_work
from agentscale.models.registry import ResolvedModel
from agentscale.models.replicas import EndpointsCoolingDown, served_by, shared_routers
from agentscale.storage import sqlite_failure, storage_error
from agentscale.storage.db import Store
from agentscale.storage.tables import CacheEntry
from agentscale.tracing.hooks import span

TRACED_RESULT_FIELDS = ("prompt_tokens", "completion_tokens", "cached", "latency_s", "endpoint", "attempts")
"""What a model call's span reports when tracing is on (and its completion, with content capture)."""
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
DEFAULT_TEMPERATURE = 0.7
_CACHE_OFF = frozenset({"off", "0", "false", "no"})
_CACHE_ON = frozenset({"", "on", "1", "true", "yes"})


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway calls models: `timeout_s` per attempt (a time budget shortens it), up to
    `max_retries` retries of a retryable failure (429, 5xx, a timeout, a connection error) after
    `backoff_s` doubling up to `max_backoff_s` (a 429's Retry-After is honoured), at most
    `max_concurrency` calls in flight per endpoint unless a model alias sets its own, and the
    response `cache` (`GatewaySettings.from_env()` reads `AGENTSCALE_CACHE=off`,
    `AGENTSCALE_TIMEOUT_S` and `AGENTSCALE_MAX_RETRIES`)."""

    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_concurrency: int = 16
    cache: bool = True

    def __post_init__(self) -> None:
        """Refuse values that cannot work: no call slot hung every call forever, a negative (or NaN)
        timeout failed every call, and so did an infinite one (litellm turns it into an integer); an
        infinite backoff would sleep forever at the first retry; a negative retry count meant none;
        counts must be whole."""
        for name in ("max_concurrency", "max_retries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise AgentScaleError(f"GatewaySettings.{name} must be a whole number, got {value!r}")
        for name in ("timeout_s", "backoff_s", "max_backoff_s"):  # "5" was a TypeError at the comparison
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise AgentScaleError(f"GatewaySettings.{name} must be a number of seconds, got {value!r}")
            if math.isinf(value):
                raise AgentScaleError(f"GatewaySettings.{name} must be a finite number of seconds, got {value!r}")
        if not isinstance(self.cache, bool):  # cache="no" was truthy: the cache stayed on
            raise AgentScaleError(f"GatewaySettings.cache must be True or False, got {self.cache!r}")
        if self.max_concurrency < 1:
            raise AgentScaleError(f"GatewaySettings.max_concurrency must be at least 1, got {self.max_concurrency}")
        if not self.timeout_s > 0:  # also NaN
            raise AgentScaleError(f"GatewaySettings.timeout_s must be positive, got {self.timeout_s}")
        for name in ("max_retries", "backoff_s", "max_backoff_s"):
            if not getattr(self, name) >= 0:
                raise AgentScaleError(f"GatewaySettings.{name} cannot be negative, got {getattr(self, name)}")

    @classmethod
    def from_env(cls, **overrides: Any) -> GatewaySettings:
        """Defaults, with `AGENTSCALE_CACHE=off`, `AGENTSCALE_TIMEOUT_S` and `AGENTSCALE_MAX_RETRIES`
        honoured, then explicit overrides. Another value is an error naming the ones read
        (`AGENTSCALE_CACHE=of` kept the cache on without a word). The timeout and retries were
        settable from Python alone: a command on a slow local model (a 7B on a CPU) could not wait
        longer than 120 s a call, nor give up on a dead server sooner than 4 x 120 s."""
        values: dict[str, Any] = {}
        setting = os.environ.get("AGENTSCALE_CACHE", "").strip().lower()
        if setting in _CACHE_OFF:
            values["cache"] = False
        elif setting not in _CACHE_ON:
            raise AgentScaleError(
                f"AGENTSCALE_CACHE={os.environ['AGENTSCALE_CACHE']!r}: use off (or 0, false, no) or on (1, true, yes)"
            )
        for name, read, what in (("timeout_s", float, "a number of seconds"), ("max_retries", int, "a whole number")):
            variable = f"AGENTSCALE_{name.upper()}"
            if (raw := os.environ.get(variable, "").strip()) == "":
                continue
            try:
                values[name] = read(raw)
                cls(**{name: values[name]})  # its own checks (a positive timeout, ...), said with the variable
            except (ValueError, AgentScaleError) as exc:
                why = f"give {what}" if isinstance(exc, ValueError) else str(exc)
                raise AgentScaleError(f"{variable}={raw!r}: {why}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class CallRequest:
    model: ResolvedModel
    messages: list[dict[str, str]]
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    top_p: float | None = None
    sample_index: int = 0
    # A JSON schema the reply must follow (structured output: vLLM constrains decoding to it).
    json_schema: dict[str, Any] | None = None
    _cache_key: str | None = field(default=None, init=False, repr=False, compare=False)

    def cache_key(self) -> str:
        """Route, messages, sampling params, sample index and schema; never the endpoint or the key.
        Computed once per request (a call looks it up and, when paid, stores under it)."""
        if self._cache_key is None:
            object.__setattr__(self, "_cache_key", self._compute_cache_key())
        assert self._cache_key is not None
        return self._cache_key

    def _compute_cache_key(self) -> str:
        payload: dict[str, Any] = {
            "route": self.model.route,
            "messages": self.messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "sample": self.sample_index if self.temperature > 0 else 0,
        }
        if self.json_schema is not None:  # absent otherwise, so keys written before schemas stay valid
            payload["json_schema"] = self.json_schema
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    @property
    def seed(self) -> int:
        """A sampled call's seed: reproducible, so a cache miss re-creates what the cache would have
        held, and the request's own. The sample index alone seeded vLLM's random stream identically
        for every question: Qwen 0.5B's sample 0 skipped its reasoning on 12 of 12 questions and
        samples 1 and 2 on none, so one model's samples erred together across a whole eval.
        The simulator hashes the prompt into its draws itself and keeps the index."""
        if self.model.hashes_prompt_into_samples:
            return self.sample_index
        return int(self.cache_key()[:8], 16) & 0x7FFFFFFF


@dataclass(frozen=True)
class CallResult:
    completion: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # for a cache hit: the original call's latency
    cached: bool
    endpoint: str
    attempts: int = 1
    finish_reason: str | None = None  # as the server said it (`length`: max_tokens reached), a cache hit's as stored

    @classmethod
    def from_cache(cls, entry: CacheEntry) -> CallResult:
        """A cache hit: the original call's reply, usage, latency and finish reason."""
        return cls(
            entry.completion,
            entry.prompt_tokens,
            entry.completion_tokens,
            entry.latency_s,
            True,
            "cache",
            attempts=0,
            finish_reason=entry.finish_reason,
        )


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _timeouts() -> tuple[type[BaseException], ...]:
    """The exceptions a call that ran out of time raises."""
    return (get_litellm().Timeout, asyncio.TimeoutError)


def _is_retryable(exc: BaseException) -> bool:
    litellm = get_litellm()
    retried = (*_timeouts(), litellm.APIConnectionError, EndpointsCoolingDown, MalformedReply)
    if at_interpreter_exit(exc):  # every later attempt is refused the same way
        return False
    if isinstance(exc, retried):
        return True
    if raised_before_sending(exc):  # nothing reached a server: a retry would be refused the same way
        return False
    status = _status_of(exc)
    return status in RETRYABLE_STATUS


class Gateway:
    """The calls of every graph given it (a graph loaded without one makes its own): their
    per-endpoint limits, merging of identical calls in flight, cache and ledger. Safe across event
    loops."""

    def __init__(self, store: Store | None = None, settings: GatewaySettings | None = None) -> None:
        """`store` records runs, the response cache and the spend ledger (None: nothing is recorded
        and nothing cached); `settings` default to `GatewaySettings.from_env()`."""
        if store is not None and not isinstance(store, Store):  # a path failed at the first write, after paying
            raise TypeError(f"Gateway takes a Store or None, not {type(store).__name__}: use Gateway(Store(path))")
        if settings is not None and not isinstance(settings, GatewaySettings):  # a dict was taken, and ignored
            raise TypeError(f"Gateway's settings are a GatewaySettings(...), not {type(settings).__name__}")
        self.store = store
        self.settings = settings or GatewaySettings.from_env()
        # per event loop (a semaphore belongs to one), closed loops' dropped when a new loop comes:
        # keyed by id(), a loop's entries outlived it (one more per `asyncio.run`, forever) and a new
        # loop given a dead one's id got its semaphore ("bound to a different event loop")
        self._semaphores: dict[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = {}
        self._semaphores_lock = threading.Lock()  # loops of several threads share one gateway
        self._routers = shared_routers()
        # paid calls in flight by (event loop, cache key): the same request asked again meanwhile
        # waits for that answer, as it would find it in the cache had it come later
        self._in_flight: dict[tuple[int, str], asyncio.Future[CallResult]] = {}
        # paid calls' rows the database refused (held past its busy timeout by another process):
        # kept for the next write, so that a question asked again once it is free is answered from
        # the cache instead of paid again (`_write_calls`)
        self._unrecorded: list[tuple[dict[str, Any] | None, dict[str, Any]]] = []
        self._unrecorded_lock = threading.Lock()

    def _semaphore(self, model: ResolvedModel) -> asyncio.Semaphore:
        """Calls in flight per endpoint, per event loop (an asyncio semaphore belongs to one loop; the
        synchronous runs of a process share one). A set of replicas admits the limit times its size:
        its Router sends each call to the least busy endpoint, so no healthy one holds more than the limit."""
        loop = asyncio.get_running_loop()
        with self._semaphores_lock:
            slots = self._semaphores.get(loop)
            if slots is None:
                for closed in [known for known in self._semaphores if known.is_closed()]:
                    del self._semaphores[closed]
                slots = self._semaphores[loop] = {}
            if model.endpoint not in slots:
                limit = model.max_concurrency or self.settings.max_concurrency
                slots[model.endpoint] = asyncio.Semaphore(limit * model.endpoint_count)
            return slots[model.endpoint]

    def cached(self, request: CallRequest) -> CallResult | None:
        if not (self.settings.cache and self.store is not None):
            return None
        entry = self.store.cache_get(request.cache_key())
        if entry is None:
            return None
        return CallResult.from_cache(entry)

    async def complete(
        self,
        request: CallRequest,
        *,
        node: str | None = None,
        clock: CallTime | None = None,
        run_id: str | None = None,
        item_key: str | None = None,
    ) -> CallResult:
        """Answer from the cache, or call the model with bounded retries; raise ModelCallError.

        Real calls are entered in the spend ledger under `run_id` and `item_key` (cache hits cost
        nothing): the item key tells whose call it was even when the item never finished.
        """
        attributes = {
            "route": request.model.route,
            "node": node,
            "run_id": run_id,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "top_p": request.top_p,
            "sample_index": request.sample_index,
            "messages": request.messages,
        }
        with span("call", request.model.route, attributes) as traced:  # tracing (agentscale.tracing): no-op when off
            entered = _Entered(run_id, item_key)
            try:
                result = await self._complete(request, node=node, clock=clock, entered=entered)
            except ModelCallError as failed:  # which endpoint, after how many attempts: said only on success
                said = {"endpoint": failed.endpoint, "attempts": failed.attempts}
                traced.set({key: value for key, value in said.items() if value is not None})
                raise
            usd = call_usd(request.model, result.prompt_tokens, result.completion_tokens)
            traced.set({name: getattr(result, name) for name in TRACED_RESULT_FIELDS})
            traced.set({"usd": usd, "completion": result.completion})
            return result

    async def _complete(
        self, request: CallRequest, *, node: str | None, clock: CallTime | None, entered: _Entered
    ) -> CallResult:
        refused: StorageError | None = None
        if self._unrecorded:  # before the cache is read: they may answer this request
            try:
                self._write_calls([])
            except StorageError as exc:  # still held: a reader is not kept out, and a hit records nothing
                refused = exc
        hit = self.cached(request)
        if hit is not None:
            return hit
        if refused is not None:  # a call it could not record is not paid
            raise refused
        if not (self.settings.cache and self.store is not None):
            return await self._paid(request, node=node, clock=clock, entered=entered)
        key = (id(asyncio.get_running_loop()), request.cache_key())
        asked = self._in_flight.get(key)
        if asked is not None:
            return await self._wait_for(asked, request, node=node, clock=clock, entered=entered)
        answer: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = answer
        try:
            result = await self._paid(request, node=node, clock=clock, entered=entered)
        except ModelCallError as exc:  # failed after its retries: the same request would fail again
            answer.set_exception(exc)
            answer.exception()  # retrieved, whether or not another asker waits
            raise
        else:
            answer.set_result(result)
            return result
        finally:
            del self._in_flight[key]
            if not answer.done():  # cancelled (or a bug): those waiting call for themselves
                answer.set_exception(_FirstAskerGone())
                answer.exception()

    async def _wait_for(
        self,
        asked: asyncio.Future[CallResult],
        request: CallRequest,
        *,
        node: str | None,
        clock: CallTime | None,
        entered: _Entered,
    ) -> CallResult:
        """The answer of the same request in flight, as a cache hit; its failure, named for this
        node; if its asker was cancelled, this asker's own call. The run's time cap bounds the wait."""
        timeout_s = clock.remaining() if clock is not None else None
        try:
            async with asyncio.timeout(timeout_s):
                first = await asyncio.shield(asked)
        except _FirstAskerGone:
            return await self._complete(request, node=node, clock=clock, entered=entered)
        except ModelCallError as exc:
            raise ModelCallError(
                f"the same request in flight failed: {exc}",
                node=node,
                endpoint=exc.endpoint,
                out_of_time=exc.out_of_time,  # the same time budget's end, seen by both askers
                latency_s=exc.latency_s,
            ) from exc
        except TimeoutError:  # only a time budget bounds the wait
            raise ModelCallError(
                f"timed out after {timeout_s:.0f}s waiting for the same request in flight", node=node, out_of_time=True
            ) from None
        return replace(first, cached=True, endpoint="cache", attempts=0)

    async def _paid(
        self, request: CallRequest, *, node: str | None, clock: CallTime | None, entered: _Entered
    ) -> CallResult:
        """Call the model (bounded retries, the endpoint's concurrency limit) and record the spend.

        What the run's time cap (`clock`) leaves once the call has its endpoint's slot bounds the
        whole call, retries and backoff included: each attempt gets only the time left, and no retry
        starts once it is gone (a 1 s budget ran 6.4 s: four attempts of the clipped timeout each).
        The wait for the slot is the run's to count (`RunLedger.elapsed`)."""
        endpoint = await resolve_endpoint(request.model)
        where = endpoint.where or request.model.route
        base_timeout = endpoint.timeout_s or self.settings.timeout_s
        slots = self._semaphore(request.model)
        with clock.queued() if clock is not None else contextlib.nullcontext():
            await slots.acquire()
        try:
            with clock.calling() if clock is not None else contextlib.nullcontext():
                result = await self._attempts(request, endpoint, where, base_timeout, clock, node=node)
        finally:
            slots.release()
        if self.store is not None:
            self._record(request, result, entered)
        return result

    async def _attempts(
        self,
        request: CallRequest,
        endpoint: Endpoint,
        where: str,
        base_timeout: float,
        clock: CallTime | None,
        *,
        node: str | None,
    ) -> CallResult:
        """The call's attempts, holding its endpoint's slot."""
        timeout_s = clock.remaining() if clock is not None else None
        deadline = None if timeout_s is None else time.perf_counter() + timeout_s
        attempt = 0
        first_sent = time.perf_counter()
        while True:
            attempt += 1
            started = time.perf_counter()
            timeout = base_timeout if deadline is None else min(base_timeout, max(deadline - started, 0.001))
            try:
                response = await self._call(endpoint, request, timeout, budgeted=deadline is not None)
                check_reply(response)
            except Exception as exc:
                delay = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2
                delay = max(delay, server_asked_wait_s(exc) or 0.0)  # a 429's Retry-After
                retry = attempt <= self.settings.max_retries and _is_retryable(exc)
                # the time budget ended this call: it cut the attempt's timeout short and the
                # attempt timed out, or it leaves no room for the retry that would come next
                cut_short = timeout < base_timeout and isinstance(exc, _timeouts())
                out_of_time = deadline is not None and (
                    cut_short or (retry and time.perf_counter() + delay >= deadline)
                )
                if not retry or out_of_time:
                    detail = _describe(exc)
                    if isinstance(exc, _timeouts()) and not out_of_time:
                        detail += _timeout_hint(base_timeout, own=endpoint.timeout_s is not None)
                    why = " (the time budget leaves no room for another)" if out_of_time else ""
                    raise ModelCallError(
                        f"call failed after {attempt} attempt(s){why}: {detail}",
                        node=node,
                        endpoint=where,
                        out_of_time=out_of_time,
                        latency_s=time.perf_counter() - first_sent,
                        attempts=attempt,
                    ) from exc
                await asyncio.sleep(delay)
                if endpoint.refresh is not None and refused_connection(exc):
                    endpoint = await self._refreshed(endpoint, node=node, where=where, since=first_sent)
                    where = endpoint.where or request.model.route
                continue
            latency = time.perf_counter() - first_sent  # the retries' time too: the call took it all
            break
        return _to_result(
            response, request, latency, (served_by(response) if endpoint.replicas else None) or where, attempt
        )

    def _record(self, request: CallRequest, result: CallResult, entered: _Entered) -> None:
        """The spend ledger row and (cache on) the cache entry, in one transaction, as soon as the
        call returns: a crash right after loses neither the answer nor the record of its cost."""
        assert self.store is not None
        model = request.model
        spend = {  # a `spendentry` row
            "run_id": entered.run_id,
            "item_key": entered.item_key,
            "route": model.route,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "flops": model_flops(model, result.prompt_tokens, result.completion_tokens) or 0.0,
            "usd": call_usd(model, result.prompt_tokens, result.completion_tokens),
        }
        entry = None
        if self.settings.cache and result.completion:  # an empty reply is asked again, not replayed
            entry = {  # a `cacheentry` row
                "key": request.cache_key(),
                "route": model.route,
                "request_json": json.dumps({"messages": request.messages, "sample": request.sample_index}),
                "completion": result.completion,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "latency_s": result.latency_s,
                "finish_reason": result.finish_reason,
            }
        self._write_calls([(entry, spend)])

    def _write_calls(self, calls: list[tuple[dict[str, Any] | None, dict[str, Any]]]) -> None:
        """Write paid calls' rows, with those an earlier write could not. If the database refuses them
        (another process held it past its busy timeout, a full disk), all are kept for the next write
        and a `StorageError` says so: lost, the calls were neither in the ledger nor in the cache,
        and paid again when asked again."""
        assert self.store is not None
        with self._unrecorded_lock:
            pending, self._unrecorded = [*self._unrecorded, *calls], []
        try:
            self.store.record_calls(pending)
        except Exception as exc:
            cause = sqlite_failure(exc)
            if cause is None:  # this program's bug, not the database's: kept, it would fail every call
                raise
            with self._unrecorded_lock:
                self._unrecorded[:0] = pending
            doing = f"recording {len(pending)} paid call(s), which this gateway keeps for its next write"
            raise storage_error(self.store.path, cause, doing) from exc

    @staticmethod
    async def _refreshed(endpoint: Endpoint, *, node: str | None, where: str | None, since: float) -> Endpoint:
        """The endpoint found again after a refused connection; failing that (no room to restart a
        server, ...), the call fails like any other, so one item is lost, not the whole run."""
        assert endpoint.refresh is not None
        try:
            return await endpoint.refresh()
        except AgentScaleError as exc:
            raise ModelCallError(
                f"the server refused the connection and could not be found again: {exc}",
                node=node,
                endpoint=where,
                latency_s=time.perf_counter() - since,  # the attempts' time, from the first
            ) from exc

    async def _call(self, endpoint: Endpoint, request: CallRequest, timeout: float, *, budgeted: bool = False) -> Any:
        """One attempt; `budgeted`: `timeout` is what a time budget leaves, which bounds the attempt
        as a whole (a replica set's Router may otherwise try each endpoint for that long)."""
        litellm = get_litellm()
        kwargs: dict[str, Any] = {
            "model": endpoint.litellm_model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "timeout": timeout,
            "num_retries": 0,
            **endpoint.extra,
        }
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": request.json_schema, "strict": True},
            }
        if request.temperature > 0:
            kwargs["seed"] = request.seed  # each sampled slot of each prompt its own, reproducible sample
        if endpoint.replicas:
            return await self._call_replicas(endpoint, kwargs, timeout, budgeted=budgeted)
        if endpoint.api_base:
            kwargs["api_base"] = endpoint.api_base
        if endpoint.api_key:
            kwargs["api_key"] = endpoint.api_key
        # a margin over litellm's own timeout; asyncio.timeout, unlike wait_for, starts no extra task
        async with asyncio.timeout(timeout + 5):
            with skipping_unread_work(kwargs) as call:
                return await litellm.acompletion(**call)

    async def _call_replicas(
        self, endpoint: Endpoint, kwargs: dict[str, Any], timeout: float, *, budgeted: bool
    ) -> Any:
        """One attempt through the set's Router; it may try every endpoint once, each up to `timeout`,
        unless a time budget leaves only `timeout` for them all (two slow replicas ran 2.1 s of a 1 s
        budget)."""
        call = {k: v for k, v in kwargs.items() if k not in ("model", "num_retries", *endpoint.extra)}
        attempt = self._routers.acompletion(
            endpoint.litellm_model, endpoint.replicas, endpoint.api_key, endpoint.extra, call
        )
        async with asyncio.timeout(timeout if budgeted else timeout * len(endpoint.replicas) + 5):
            return await attempt


@dataclass(frozen=True)
class _Entered:
    """What a paid call's spend ledger row is entered under: the run, and the item whose call it was."""

    run_id: str | None
    item_key: str | None


class _FirstAskerGone(Exception):
    """The asker whose call a waiting asker relied on was cancelled before it answered."""


def _timeout_hint(timeout_s: float, *, own: bool) -> str:
    """What sets an attempt's timeout, after a call whose attempts all timed out: a real 0.5B feedback
    agent writing 1,024 tokens at 2-10 a second on a loaded CPU timed out four times at the default
    120 s (8 minutes), and nothing named the setting."""
    if own:
        return f" (each attempt may take {timeout_s:g} s, this endpoint's timeout)"
    return (
        f" (each attempt may take {timeout_s:g} s: a slower server needs AGENTSCALE_TIMEOUT_S, or "
        "GatewaySettings.timeout_s, higher; a bundled local/ model gets 900 s)"
    )


def _describe(exc: BaseException) -> str:
    status = _status_of(exc)
    text = _first_line(str(exc).strip()) or type(exc).__name__
    if len(text) > 300:
        text = text[:300] + "..."
    if at_interpreter_exit(exc):
        return (
            "no request was sent: Python is shutting down (the main thread has returned, or this is an exit "
            "hook), and its thread pools, which model calls need, take no more work; finish runs before the "
            "main thread returns (join the threads that make them)"
        )
    if raised_before_sending(exc):
        return f"no request was sent: {text}"
    # litellm gives these a made-up status (408, 500) though no HTTP reply came
    if isinstance(exc, _timeouts()):
        return f"timed out: {text}"
    # litellm's labels for a reply it could not read: not JSON, an HTML page, a field of the wrong type
    if status == 200 or _UNREADABLE in text:
        return f"the reply could not be read: {text}"
    if isinstance(exc, get_litellm().APIConnectionError) or refused_connection(exc):
        return f"connection failed: {text}"
    return f"HTTP {status}: {text}" if status else f"{type(exc).__name__}: {text}"


_UNREADABLE = "Invalid response object"  # litellm's APIConnectionError for a reply its types refused
_TRACEBACK = "Traceback (most recent call last):"
_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$")  # a traceback's last "pkg.SomeError: why"
_CLIENT_OBJECT = re.compile(r" ssl:<[^>]*>")  # aiohttp's "ssl:<ssl.SSLContext object at 0x7f...>"


def _first_line(message: str) -> str:
    """The line of an error message worth showing. litellm puts a whole traceback in some messages
    ("Invalid response object Traceback (most recent call last):" was all a user saw of a reply whose
    content was a list): there, its first line with the error the traceback ends in, and the line
    after that (pydantic's field name), instead of the traceback's header."""
    lines = message.splitlines()
    if not lines:
        return ""
    first = _CLIENT_OBJECT.sub("", lines[0])
    if not first.rstrip().endswith(_TRACEBACK):
        return first
    first = first.rstrip()[: -len(_TRACEBACK)].rstrip()
    for index in range(len(lines) - 1, 0, -1):
        if (raised := _RAISED.match(lines[index].strip())) is not None:
            detail = " ".join(line.strip() for line in lines[index + 1 : index + 3] if line.strip())
            return f"{first}: {raised[1]}: {raised[2]}" + (f" ({detail})" if detail else "")
    return first


def _to_result(response: Any, request: CallRequest, latency: float, where: str, attempts: int) -> CallResult:
    """Text and usage of a response; a provider may report a modelled latency (the simulator does)."""
    modelled = (getattr(response, "_hidden_params", None) or {}).get("agentscale_latency_s")
    if modelled is not None:
        latency = float(modelled)
    text, prompt_tokens, completion_tokens = reply_text_and_usage(response, request.messages)
    finish_reason = getattr(response.choices[0], "finish_reason", None)
    return CallResult(
        text, prompt_tokens, completion_tokens, latency, False, where, attempts, str(finish_reason or "") or None
    )


def store_of(gateway: object, doing: str) -> Store:
    """The gateway's database, for work that keeps its state there (`doing`: "resuming an
    evaluation"). Something else given as the gateway (None, a Store) is named: it failed on
    "'NoneType' object has no attribute 'require_store'"."""
    if not isinstance(gateway, Gateway):
        raise TypeError(f"{doing} takes a Gateway, e.g. Gateway(Store(path)), not {type(gateway).__name__}")
    if gateway.store is None:
        raise AgentScaleError(f"{doing} needs a database (store)")
    return gateway.store
