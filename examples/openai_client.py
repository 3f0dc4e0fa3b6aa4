"""Use a served graph with the official OpenAI client.

Start the server first:  agentscale serve-graph graphs/fan-in.yaml --port 8080
Then:                    python examples/openai_client.py [BASE_URL] [MODEL]

Set OPENAI_API_KEY to the server's key if it was started with --api-key-env.
"""

from __future__ import annotations

import os
import sys

from openai import OpenAI


def main(base_url: str, model: str) -> None:
    client = OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "not-needed"))
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is 17 + 25?"}])
    print(f"answer: {reply.choices[0].message.content} (tokens: {reply.usage.total_tokens if reply.usage else '?'})")
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is 2 + 3?"}], stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    print(f"streamed: {''.join(pieces)}")


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/v1", sys.argv[2] if len(sys.argv) > 2 else "fan-in"
    )
