"""Does agentscale's local serving use vLLM's batching? Cold start, then sequential vs concurrent tokens/s.

Starts (or reuses) the vLLM server of a local model, then sends the same N chat calls twice through
litellm: one after another, and all at once with ``asyncio.gather`` (what a width-N graph does, since its
independent nodes run concurrently against one server). Every call generates exactly ``--max-tokens``
tokens (``ignore_eos``), so the two runs do the same work. Goal: concurrent ≥ 3x sequential tokens/s.

    python benchmarks/serving.py                 # bundled local/smollm2-135m, 8 calls of 128 tokens
    python benchmarks/serving.py --model local/qwen2.5-coder-1.5b --n 16
    python benchmarks/serving.py --json --n 8 --max-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

from agentscale.models.bundled import ensure_bundled_model
from agentscale.models.catalog import BUNDLED
from agentscale.models.serving import VllmEndpoint, ensure_server, stop_all

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


async def _measure(endpoint: VllmEndpoint, n: int, max_tokens: int) -> dict[str, Any]:
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]
    await _call(endpoint, "Hello", 8)  # warm-up: first-request overheads are not throughput

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2-135m", help="local route, model folder or hub id")
    parser.add_argument("--n", type=int, default=8, help="calls per run (the graph width)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--keep", action="store_true", help="leave a server this script started running")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = parser.parse_args(argv)

    def status(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    result: dict[str, Any] = {"model": args.model}
    if args.model.removeprefix("local/") in BUNDLED:
        started = time.perf_counter()
        ensure_bundled_model(args.model.removeprefix("local/"), on_status=status)
        result["convert_s"] = round(time.perf_counter() - started, 1)  # ~0 once converted
    started = time.perf_counter()
    endpoint = ensure_server(args.model, on_status=status)
    result["cold_start_s"] = round(time.perf_counter() - started, 1) if endpoint.started_here else None
    try:
        result.update(asyncio.run(_measure(endpoint, args.n, args.max_tokens)))
    finally:
        if not args.keep:
            stop_all()

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    cold = f"{result['cold_start_s']} s" if result["cold_start_s"] is not None else "n/a (reused a running server)"
    seq, con = result["sequential"], result["concurrent"]
    print(f"model                 {args.model}")
    if "convert_s" in result:
        print(f"GGUF conversion       {result['convert_s']} s")
    print(f"server cold start     {cold}")
    print(f"{args.n} sequential calls   {seq['tokens']} tokens in {seq['seconds']} s = {seq['tok_s']} tok/s")
    print(f"{args.n} concurrent calls   {con['tokens']} tokens in {con['seconds']} s = {con['tok_s']} tok/s")
    verdict = "meets" if result["speedup"] >= 3 else "misses"
    print(f"speedup               {result['speedup']}x ({verdict} the 3x goal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
