"""Options shared by several commands, declared once so their help text stays consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentscale.models.gateway import Gateway, GatewaySettings
from agentscale.storage.db import Store

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="SQLite file for runs and the response cache (env AGENTSCALE_DB; default ./.agentscale/agentscale.db).",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout (human output is suppressed).")
]
NoCacheOption = Annotated[
    bool,
    typer.Option("--no-cache", help="Do not read or write the response cache (env AGENTSCALE_CACHE=off)."),
]


def open_store(db: Path | None) -> Store:
    return Store(db)


def make_gateway(db: Path | None, no_cache: bool, **settings: float | int | None) -> Gateway:
    overrides = {k: v for k, v in settings.items() if v is not None}
    if no_cache:
        overrides["cache"] = False
    return Gateway(open_store(db), GatewaySettings.from_env(**overrides))
