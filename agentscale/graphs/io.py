"""Reading and writing graph files (load with line-aware errors, dump so that load(dump(x)) == x), and
the output files a user names (refused when a directory, written atomically).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from agentscale.errors import AgentScaleError, SpecError, SpecIssue
from agentscale.graphs.located import read_exponents_as_yaml12
from agentscale.graphs.spec import GraphSpec
from agentscale.graphs.validate import load_spec_text

_KEY_ORDER = (
    "version",
    "name",
    "description",
    "models",
    "defaults",
    "nodes",
    "edges",
    "output",
    "answer_format",
    "budget",
    "memory",
    "coordinator",
    "roles",
)


def refuse_unusable_output(path: Path, example: str, *, shown: str | None = None) -> None:
    """An output file given as a directory (`--out runs/`, `-o .`), under a file, or as a database is
    refused before anything is written or computed, with a file path to give instead; `shown` names
    it as the user wrote it. (`optimize --out file/best.yaml` ran its whole search, then failed to
    write and printed no result.)"""
    if path.is_dir():
        raise AgentScaleError(f"{shown or path} is a directory; give a file path, e.g. {path / example}")
    if (blocking := blocking_file(path)) is not None:
        raise AgentScaleError(f"cannot write {shown or path} ({blocking} is a file)")
    _refuse_database(path, shown)
    _refuse_an_unwritable_folder(path, shown)


def _refuse_an_unwritable_folder(path: Path, shown: str | None) -> None:
    """A file is written beside its target and renamed (`write_output`), so the folder that would hold
    it (or the nearest one that exists) must take a new file: tried with a file deleted at once.
    `optimize --out /proc/best.yaml` ran the whole search, then failed to write. A link or a special
    file is written in place and left to its own writing."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        return
    folder = next((parent for parent in path.parents if parent.is_dir()), None)
    if folder is None:
        return
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".agentscale-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise AgentScaleError(f"cannot write {shown or path} (no file can be made in {folder}: {reason})") from None


def _refuse_database(path: Path, shown: str | None = None) -> None:
    """A SQLite database is never an output: `report RUN -o X.db --db X.db` replaced the runs' file
    with HTML (every run lost), `optimize --out X.db` left it malformed."""
    if not path.is_file():  # a pipe or a device is written through (opening a FIFO to read would wait)
        return
    try:
        with path.open("rb") as handle:
            header = handle.read(16)
    except OSError:  # not readable: nothing of ours to lose there
        return
    if header == b"SQLite format 3\x00":
        raise AgentScaleError(f"{shown or path} is a SQLite database (its runs would be lost); give another path")


def write_output(path: Path, data: str | bytes) -> None:
    """Write a file the user named, creating its folder, atomically (a reader never sees half a file);
    a path that cannot be written (under a file, no permission) raises an error naming it. A link or
    a special file (`/dev/stdout`, a pipe) is written in place: replacing it would break it."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    _refuse_database(path)
    in_place = path.is_symlink() or (path.exists() and not path.is_file())
    target = path if in_place else path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
        if not in_place:
            target.replace(path)
    except OSError as exc:
        if not in_place:
            with contextlib.suppress(OSError):  # no folder to hold it either
                target.unlink(missing_ok=True)
        raise AgentScaleError(f"cannot write {path} ({why_unwritable(path, exc)})") from None


def why_unwritable(path: Path, error: OSError) -> str:
    """What stops a file being written there: a folder on its way that is a file (mkdir says only
    'File exists'), else the system's reason."""
    blocking = blocking_file(path)
    return f"{blocking} is a file" if blocking is not None else str(error.strerror or error)


def blocking_file(path: Path) -> Path | None:
    """A folder on the way to `path` that is a file, if any (no file can be made under it)."""
    return next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)


MAX_FILE_BYTES = 64 * 1024 * 1024
"""Far above any graph or space; `validate /dev/zero` read until the kernel killed it (24 GB)."""


def read_text(path: str | Path) -> str:
    """A graph, space or record file's text; what is wrong with it (missing, a folder, endless, not
    UTF-8) as a SpecError. A pipe is read (`validate <(generate)`), so one nobody writes waits."""
    if str(path) == "":  # Path("") is the current folder: "is a directory", naming no file
        raise SpecError([SpecIssue("", "an empty path: give a graph or space file")], "''")
    file = Path(path)
    if not file.exists():
        missing = "a symbolic link to nothing, or in a loop" if file.is_symlink() else "file not found"
        raise SpecError([SpecIssue("", missing)], str(path))
    if file.is_dir():
        raise SpecError([SpecIssue("", "is a directory, not a YAML file")], str(path))
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError([SpecIssue("", f"cannot read: {exc.strerror or exc}")], str(path)) from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError([SpecIssue("", f"over {MAX_FILE_BYTES // 2**20} MiB: not a graph or space file")], str(path))
    return decoded_text(data, str(path))


def decoded_text(data: bytes, source: str | None) -> str:
    """The UTF-8 text of a file's bytes (also YAML given as bytes); a byte that cannot be read is a
    SpecError at its line (bytes given to Graph.from_yaml failed inside the error's own report)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be read (save the file as UTF-8)"
        raise SpecError([SpecIssue("", message, line)], source) from None


def load_graph_spec(path: str | Path) -> GraphSpec:
    """Parse and validate a graph file; raise SpecError naming path and line of every problem."""
    return load_spec_text(read_text(path), str(path))


class _FlowList(list[Any]):
    """A list dumped in flow style, so node entries read `{id: s1, role: assistant, model: small}`."""


class _FlowDict(dict[str, Any]):
    pass


class _Dumper(yaml.SafeDumper):
    pass


read_exponents_as_yaml12(_Dumper)


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    """A string holding U+0085 (NEL) double-quoted, where it is written escaped: PyYAML wrote it as
    it is in single quotes, where a reader takes it for a line break, and the loaded graph had a
    space in its place (a mutation audit: `load(dump(spec)) == spec` failed)."""
    if "\x85" in text:
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')
    return dumper.represent_str(text)


_Dumper.add_representer(str, _represent_text)
_Dumper.add_representer(_FlowDict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def spec_to_data(spec: GraphSpec) -> dict[str, Any]:
    data = spec.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    data["name"] = spec.name
    data["nodes"] = [_FlowDict(node) for node in data["nodes"]]
    for alias, model in data.get("models", {}).items():
        data["models"][alias] = _FlowDict(model)
    for key in ("defaults", "budget", "memory", "coordinator"):
        if key in data:
            data[key] = _FlowDict(data[key])
    ordered = {key: data[key] for key in _KEY_ORDER if key in data}
    ordered["version"] = 1
    return {"version": 1, **{k: v for k, v in ordered.items() if k != "version"}}


def dump_graph_spec(spec: GraphSpec) -> str:
    """YAML text for a spec; loading it gives an equal spec."""
    return yaml.dump(spec_to_data(spec), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
