"""Does agentscale's local serving use vLLM's batching, and which dtype suits this CPU?

Starts (or reuses) the vLLM server of a local model, measures prefill (one ~900-token prompt, one
token out: what a critic or fuser reading several answers pays first), then sends the same N chat
calls twice through litellm: one after another, and all at once with ``asyncio.gather`` (what a
width-N graph does, since its independent nodes run concurrently against one server). Every call
generates exactly ``--max-tokens`` tokens (``ignore_eos``), so the two runs do the same work.
Goal: concurrent >= 3x sequential tokens/s.

``--dtype`` (repeatable) starts one server per dtype, one after the other, and prints them side by
side: the default server's dtype follows the CPU (``serving.engine.cpu_dtype``), and this is how
that choice is checked on a new machine.

    python benchmarks/serving.py                 # bundled local/smollm2-135m, 8 calls of 128 tokens
    python benchmarks/serving.py --model local/qwen2.5-coder-1.5b --n 16
    python benchmarks/serving.py --dtype bfloat16 --dtype float32 --max-tokens 64
    python benchmarks/serving.py --json --n 8 --max-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

from agentscale.models.bundled import ensure_bundled_model
from agentscale.models.catalog import BUNDLED
from agentscale.models.serving import EngineOptions, VllmEndpoint, ensure_server, group_rss_bytes, stop_all
from agentscale.models.serving.engine import cpu_dtype

QUESTIONS = [
    "What is 17 + 25?",
    "Name three primary colors.",
    "What is the capital of Italy?",
    "Explain photosynthesis in one sentence.",
    "What is 9 times 7?",
    "Write a haiku about the sea.",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water in Celsius?",
]


# ~900 prompt tokens of distinct words (no prefix the server could have cached)
LONG_PROMPT = "Repeat after me: " + " ".join(f"x{(k * 104729) % 100000}" for k in range(150))


async def _call(endpoint: VllmEndpoint, question: str, max_tokens: int) -> int:
    import litellm

    response = await litellm.acompletion(
        model=endpoint.litellm_model,
        api_base=endpoint.api_base,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0.7,
        extra_body={"ignore_eos": True},
    )
    return int(response.usage.completion_tokens)


async def _prefill(endpoint: VllmEndpoint) -> dict[str, Any]:
    """Prompt tokens per second of one long prompt (best of two distinct ones)."""
    import litellm

    best: tuple[float, int] | None = None
    for index in range(2):
        started = time.perf_counter()
        response = await litellm.acompletion(
            model=endpoint.litellm_model,
            api_base=endpoint.api_base,
            messages=[{"role": "user", "content": f"{index} {LONG_PROMPT}"}],
            max_tokens=1,
        )
        seconds = time.perf_counter() - started
        if best is None or seconds < best[0]:
            best = (seconds, int(response.usage.prompt_tokens))
    assert best is not None
    return {"prompt_tokens": best[1], "seconds": round(best[0], 2), "tok_s": round(best[1] / best[0], 1)}


async def _measure(endpoint: VllmEndpoint, n: int, max_tokens: int) -> dict[str, Any]:
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]
    await _call(endpoint, "Hello", 8)  # warm-up: first-request overheads are not throughput
    prefill = await _prefill(endpoint)

    started = time.perf_counter()
    sequential_tokens = 0
    for question in questions:
        sequential_tokens += await _call(endpoint, question, max_tokens)
    sequential_s = time.perf_counter() - started

    started = time.perf_counter()
    counts = await asyncio.gather(*(_call(endpoint, q, max_tokens) for q in questions))
    concurrent_s = time.perf_counter() - started
    concurrent_tokens = sum(counts)

    sequential_tps = sequential_tokens / sequential_s
    concurrent_tps = concurrent_tokens / concurrent_s
    return {
        "calls": n,
        "max_tokens": max_tokens,
        "prefill": prefill,
        "sequential": {
            "tokens": sequential_tokens,
            "seconds": round(sequential_s, 2),
            "tok_s": round(sequential_tps, 1),
        },
        "concurrent": {
            "tokens": concurrent_tokens,
            "seconds": round(concurrent_s, 2),
            "tok_s": round(concurrent_tps, 1),
        },
        "speedup": round(concurrent_tps / sequential_tps, 2),
    }


def _served_dtype(pid: int | None) -> str | None:
    """The --dtype on the server's command line: what it really serves in (the memory check may have
    fallen back to bfloat16); None for a server of unknown process (one reused, not started here)."""
    if pid is None:
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    return argv[argv.index("--dtype") + 1] if "--dtype" in argv[:-1] else None


def _serve_and_measure(model: str, dtype: str | None, args: argparse.Namespace) -> dict[str, Any]:
    """One server (of `dtype`, or the default) measured; stopped afterwards unless --keep."""

    def status(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    options = EngineOptions(dtype=dtype) if dtype else None
    name = f"{model.removeprefix('local/')}-{dtype}" if dtype else None  # one server per dtype
    started = time.perf_counter()
    endpoint = ensure_server(model, on_status=status, options=options, served_model_name=name)
    served = _served_dtype(endpoint.pid)
    expected = dtype or cpu_dtype()
    asked = dtype or f"default ({expected} on this CPU)"
    result: dict[str, Any] = {"dtype": asked if served in (None, expected) else f"{asked}, served in {served}"}
    result["cold_start_s"] = round(time.perf_counter() - started, 1) if endpoint.started_here else None
    try:
        result.update(asyncio.run(_measure(endpoint, args.n, args.max_tokens)))
        held = group_rss_bytes(endpoint.pid) if endpoint.pid is not None else 0
        result["server_rss_gib"] = round(held / 2**30, 2) if held else None  # after the work: its KV cache in use
    finally:
        if not args.keep:
            stop_all()
    return result


def _print(model: str, convert_s: float | None, runs: list[dict[str, Any]], n: int) -> None:
    print(f"model                 {model}")
    if convert_s is not None:
        print(f"GGUF conversion       {convert_s} s")
    for run in runs:
        seq, con, pre = run["sequential"], run["concurrent"], run["prefill"]
        cold = f"{run['cold_start_s']} s" if run["cold_start_s"] is not None else "n/a (reused a running server)"
        verdict = "meets" if run["speedup"] >= 3 else "misses"
        print(f"dtype                 {run['dtype']}")
        print(f"  server cold start   {cold}")
        print(f"  server memory (RSS) {run['server_rss_gib']} GiB")
        print(f"  prefill             {pre['prompt_tokens']} tokens in {pre['seconds']} s = {pre['tok_s']} tok/s")
        print(f"  {n} sequential calls {seq['tokens']} tokens in {seq['seconds']} s = {seq['tok_s']} tok/s")
        print(f"  {n} concurrent calls {con['tokens']} tokens in {con['seconds']} s = {con['tok_s']} tok/s")
        print(f"  speedup             {run['speedup']}x ({verdict} the 3x goal)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2-135m", help="local route, model folder or hub id")
    parser.add_argument("--n", type=int, default=8, help="calls per run (the graph width)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--dtype", action="append", default=[], help="serve with this dtype (repeat to compare; default: the CPU's)"
    )
    parser.add_argument("--keep", action="store_true", help="leave a server this script started running")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = parser.parse_args(argv)

    convert_s = None
    if args.model.removeprefix("local/") in BUNDLED:
        started = time.perf_counter()
        ensure_bundled_model(args.model.removeprefix("local/"), on_status=lambda m: print(f"  {m}", file=sys.stderr))
        convert_s = round(time.perf_counter() - started, 1)  # ~0 once converted
    runs = [_serve_and_measure(args.model, dtype, args) for dtype in args.dtype or [None]]
    if args.json:
        print(json.dumps({"model": args.model, "convert_s": convert_s, "runs": runs}, indent=2))
    else:
        _print(args.model, convert_s, runs, args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
