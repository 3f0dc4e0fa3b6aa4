"""The graph YAML (version 1) as pydantic models: the public contract of a graph file.

Field-level rules (types, ranges, unknown keys) live here; rules that need the whole graph (cycles,
reachability, unknown aliases) live in :mod:`agentscale.graphs.validate` so that every problem in a
file can be reported at once.
"""

from __future__ import annotations

import difflib
import itertools
import re
from functools import cache
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
NODE_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"
AnswerFormat = Literal["text", "number", "choice", "code"]
AnswerStyle = Literal["final_line", "boxed"]
"""How a model is asked to mark its final answer: a closing "Final answer:" line, or \\boxed{} (Qwen)."""
BUILTIN_ROLES = ("assistant", "critic", "fuser", "verifier", "vote", "tester")
MODEL_FREE_ROLES = ("vote", "tester")
ROLES_NEEDING_INPUTS = ("critic", "fuser", "verifier", "vote", "tester")
# validation context of a stored run's graph or space: field rules added since it was written let it pass
STORED = "stored"
STORED_CONTEXT = {STORED: True}
CODE_ONLY_ROLES = ("tester",)  # run their inputs as programs: need answer_format code

Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]  # .inf passed, then costs read "FLOPs inf"
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo such as `tempreature` must not be silently ignored. A number
    must be written as one and a boolean as one (`_as_written`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _as_written(cls, value: Any, info: ValidationInfo) -> Any:
        """A YAML boolean or a quoted string where a number belongs, or anything but a boolean where one
        belongs, is an error: validation converted them (`params_b: true` priced a 7B model as 1B,
        `compute: "18"` passed, `pareto: "no"` was false). Other conversions stay (`512.0` for an
        integer, a tuple for a list, NumPy numbers from code). A stored run's file loads as written
        before this rule (`STORED_CONTEXT`)."""
        if (isinstance(info.context, dict) and info.context.get(STORED)) or info.field_name is None:
            return value
        kinds = _field_kinds(cls, info.field_name)
        if kinds == {bool} and value is not None and not isinstance(value, bool):
            raise ValueError("Input should be a valid boolean: true or false, unquoted")
        if kinds and kinds <= {int, float} and isinstance(value, bool | str):
            what = "integer" if kinds == {int} else "number"
            raise ValueError(f"Input should be a valid {what}, not {_written(value)}")
        return value


def _written(value: bool | str) -> str:
    """How a user wrote a value where a number belongs (`max_tokens: abc` was called "a quoted string")."""
    if isinstance(value, bool):
        return "a boolean"
    try:
        float(value)
    except ValueError:
        return f"the text {value!r}"
    return "a quoted string"


@cache
def _field_kinds(model: type[BaseModel], name: str) -> frozenset[type]:
    return _scalar_kinds(model.model_fields[name].annotation)


def _scalar_kinds(annotation: Any) -> frozenset[type]:
    """The scalar types among bool, int, float and str a field's annotation admits (through Optional,
    unions and Annotated); empty when it admits anything else (a literal, a list, a model)."""
    if annotation in (bool, int, float, str):
        return frozenset({annotation})
    if annotation is type(None):
        return frozenset()
    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalar_kinds(get_args(annotation)[0])
    if origin in (Union, UnionType):
        found: set[type] = set()
        for arm in get_args(annotation):
            kinds = _scalar_kinds(arm)
            if not kinds and arm is not type(None):
                return frozenset()
            found |= kinds
        return frozenset(found)
    return frozenset()


class Price(StrictModel):
    """Per-model price override in USD per million tokens (wins over litellm's price map)."""

    input_per_mtok: NonNegativeFloat
    output_per_mtok: NonNegativeFloat


# Field rules the validators below enforce, said in the JSON Schema too (`agentscale schema`, for
# editors and CI checks), as keywords only: pydantic's `pattern=` would check them a second time with
# its own message instead of the validators'. A schema check passed files validate then refused.
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_HttpUrl = Annotated[str, Field(json_schema_extra={"pattern": r"^https?://[^/\s]"})]


class ModelSpec(StrictModel):
    """A model alias: a litellm route plus where and how to reach it.

    API keys are never written in graph files; `api_key_env` names the environment variable that
    holds the key, so graphs can be shared and stored without secrets. `answer_style` overrides the
    family convention the registry knows for the route (Qwen models answer in \\boxed{}).
    """

    model: Annotated[str, Field(min_length=1, json_schema_extra={"pattern": "/"})]
    api_base: _HttpUrl | Annotated[tuple[_HttpUrl, ...], Field(min_length=1)] | None = None
    api_key_env: Annotated[str, Field(json_schema_extra={"pattern": _ENV_NAME})] | None = None
    params_b: Annotated[float, Field(gt=0.0, le=100_000.0, allow_inf_nan=False)] | None = None  # ≤ 100T parameters
    n_layers: PositiveInt | None = None
    d_model: PositiveInt | None = None
    price: Price | None = None
    max_concurrency: PositiveInt | None = None
    answer_style: AnswerStyle | None = None

    @field_validator("api_key_env")
    @classmethod
    def _names_a_variable(cls, value: str | None) -> str | None:
        """`""` and `"MY KEY"` passed, and validate's note then named a blank variable."""
        if value is not None and re.fullmatch(_ENV_NAME, value) is None:
            raise ValueError(f"the name of an environment variable (letters, digits, _), not {value!r}")
        return value

    @field_validator("model")
    @classmethod
    def _route_has_provider(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError(
                f"model route {value!r} must be a litellm route such as 'openai/gpt-4o-mini' or 'local/smollm2-135m'"
            )
        return value

    @field_validator("api_base", mode="before")
    @classmethod
    def _api_base_is_one_url_or_a_list(cls, value: Any, info: ValidationInfo) -> Any:
        """A list means replicas of one model behind a load-balancing router (`agentscale.models.replicas`).

        Checked before pydantic's union so a bad list gets one message naming the item, not one error
        per union member. A single URL without its scheme (`localhost:8000/v1`) passed `validate` and
        failed every call at run time with a bare HTTP 500 from litellm, after its retries.
        """
        if value is None:
            return value
        stored = (info.context or {}).get(STORED)  # a stored run's: checked when it was given
        if isinstance(value, str):
            if not is_http_url(value) and not stored:
                raise ValueError(f"api_base {value!r} is not an http(s) URL such as 'http://gpu1:8000/v1'")
            if not stored:
                _refuse_credentials(value, "api_base")
            return value
        if not isinstance(value, list | tuple):
            raise ValueError("api_base must be a URL or a list of URLs")
        if not value:
            raise ValueError("api_base is an empty list: give one URL, or a list of the model's endpoints")
        seen: dict[str, int] = {}
        for index, url in enumerate(value):
            if not isinstance(url, str) or not is_http_url(url):
                raise ValueError(f"api_base[{index}] {url!r} is not an http(s) URL such as 'http://gpu1:8000/v1'")
            if not stored:
                _refuse_credentials(url, f"api_base[{index}]")
            key = url.rstrip("/")
            if key in seen:
                raise ValueError(f"api_base[{index}] {url!r} duplicates api_base[{seen[key]}]")
            seen[key] = index
        return tuple(value)


def _refuse_credentials(url: str, where: str) -> None:
    """A URL carrying a user, a password or a query (`http://alice:sk-...@host/v1`, `?api-key=...`) is
    refused: its secret went into the stored graph, every call's error, `runs show`, the HTML report
    and the trace spans (a security review). The message names the URL without them."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or parts.query:
        bare = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        raise ValueError(
            f"{where} {bare!r} carries a user, password or query string: they would be stored with every run "
            "and shown in errors and reports; give the key with api_key_env (the name of a variable holding it)"
        )


def is_http_url(text: str) -> bool:
    """An http(s) URL with a host, and a port from 1 to 65535 when it names one: what an `api_base`
    must be (`http://:8000/v1` and `http://gpu1:99999/v1` passed, and no call could reach them)."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


class Sampling(StrictModel):
    """Sampling parameters shared by `defaults:` and each node."""

    temperature: Temperature | None = None
    max_tokens: PositiveInt | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None


class NodeSpec(StrictModel):
    """One role node; `model` is an alias from `models:` or a litellm route (contains '/')."""

    model_config = ConfigDict(
        json_schema_extra={  # a vote or a tester calls no model (validate refuses one given)
            "if": {"properties": {"role": {"enum": list(MODEL_FREE_ROLES)}}, "required": ["role"]},
            "then": {"properties": {"model": {"type": "null"}}},
        }
    )

    id: Annotated[str, Field(pattern=NODE_ID_PATTERN)]
    role: Annotated[str, Field(min_length=1)]
    model: str | None = None
    temperature: Temperature | None = None
    max_tokens: PositiveInt | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None


DEFAULT_MAX_TOKENS = 512
"""A call's completion length when neither its node nor the graph's `defaults` set `max_tokens`."""


class Budget(StrictModel):
    """Per-question caps, enforced before each call."""

    max_tokens: PositiveInt | None = None
    max_usd: PositiveFloat | None = None
    max_flops: PositiveFloat | None = None
    max_latency_s: PositiveFloat | None = None


class Memory(StrictModel):
    """Behavior handbook retrieval for every node's prompt; `topic` keeps the behaviors filed under
    it (a build files them under its task's name), as the handbook paper retrieves by subject."""

    handbook: Annotated[str, Field(min_length=1, json_schema_extra={"pattern": r"^\s*\S{1,100}\s*$"})]
    top_k: PositiveInt = 5
    topic: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("handbook")
    @classmethod
    def _a_handbook_name(cls, name: str) -> str:
        """Refused here, at its line: `handbook: 'a b'` passed validate and failed at the first question."""
        if not handbook_name_ok(name):
            raise ValueError(f"bad handbook name {name!r}: give 1-100 characters without spaces")
        return name.strip()


def handbook_label(memory: Memory) -> str:
    """How a run names the handbook its prompts drew on (`eval --handbook` said nothing of it)."""
    topic = f", topic {memory.topic}" if memory.topic else ""
    return f"{memory.handbook} (top {memory.top_k} behaviors per prompt{topic})"


def handbook_name_ok(name: str) -> bool:
    """A handbook's name: 1-100 characters, no blanks (around it, they are dropped)."""
    name = name.strip()
    return bool(name) and len(name) <= 100 and not any(c.isspace() for c in name)


class Coordinator(StrictModel):
    """A CEO model that steers multi-round discussions (see docs/coordinator.md).

    `min_agents`/`max_agents` bound how many worker nodes a round may run (`max_agents` unset: the
    graph's own worker count); `min_tokens`/`max_tokens` bound the per-node completion budget the CEO
    may set (`max_tokens` unset: the graph's largest node `max_tokens`). The CEO's output is always
    clamped to these, so a model can never raise the graph's caps. `evaluator` (alias or route) judges
    each round's answer and advises the next CEO call. `structured_output` sends the decision's (and
    verdict's) JSON schema with the call, so a server that supports it (vLLM) constrains decoding to it.
    `stop_guard: stated_examples` refuses the CEO's stop while the current answer (code) fails an
    example the question itself states: a small CEO stops on wrong programs it could have checked.
    """

    model: Annotated[str, Field(min_length=1)]
    max_rounds: Annotated[int, Field(ge=1, le=100)] = 3
    min_agents: Annotated[int, Field(ge=1, le=256)] = 1
    max_agents: Annotated[int, Field(ge=1, le=256)] | None = None
    min_tokens: PositiveInt = 16
    max_tokens: PositiveInt | None = None
    evaluator: Annotated[str, Field(min_length=1)] | None = None
    structured_output: bool = False
    stop_guard: Literal["none", "stated_examples"] = "none"

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> Coordinator:
        if self.max_agents is not None and self.min_agents > self.max_agents:
            raise ValueError(f"min_agents ({self.min_agents}) must be <= max_agents ({self.max_agents})")
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})")
        return self


# what a role's templates may say, filled per call (other braces, code or JSON, are left as written)
ROLE_PLACEHOLDERS = ("question", "inputs", "format", "direction", "behaviors")


class RoleSpec(StrictModel):
    """A custom role: prompt templates with {question}, {inputs} and optional {direction}."""

    system: Annotated[str, Field(min_length=1)]
    user: Annotated[str, Field(min_length=1, json_schema_extra={"pattern": r"\{question\}"})]
    requires_inputs: bool = False

    @field_validator("user")
    @classmethod
    def _mentions_question(cls, value: str) -> str:
        if "{question}" not in value:
            raise ValueError("the user template must contain {question}")
        return value

    @field_validator("system", "user")
    @classmethod
    def _no_misspelt_placeholder(cls, value: str) -> str:
        """`{input}` or `{qeustion}` reached the model as written, the inputs or question never shown."""
        for word in re.findall(r"\{(\w+)\}", value):
            close = difflib.get_close_matches(word, ROLE_PLACEHOLDERS, n=1, cutoff=0.75)
            if word not in ROLE_PLACEHOLDERS and close:
                raise ValueError(f"{{{word}}} is no placeholder: did you mean {{{close[0]}}}?")
        return value


class GraphSpec(StrictModel):
    """A whole collaboration graph."""

    version: Literal[1] = 1
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    models: dict[str, ModelSpec] = Field(  # an alias with '/' reads as a route (validate refuses it)
        default_factory=dict, json_schema_extra={"propertyNames": {"pattern": "^[^/]+$"}}
    )
    defaults: Sampling = Field(default_factory=Sampling)
    nodes: Annotated[list[NodeSpec], Field(min_length=1)]
    edges: list[str] = Field(default_factory=list)
    output: str | None = None
    answer_format: AnswerFormat | None = None
    budget: Budget | None = None
    memory: Memory | None = None
    coordinator: Coordinator | None = None
    roles: dict[str, RoleSpec] = Field(  # a custom role may not shadow a built-in one
        default_factory=dict, json_schema_extra={"propertyNames": {"not": {"enum": list(BUILTIN_ROLES)}}}
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_one(cls, value: Any) -> Any:
        """`version: true` passed (True == 1) and a 31-digit version was "Unable to parse input string"."""
        if isinstance(value, bool) or value != 1:
            shown = str(value).lower() if isinstance(value, bool) else repr(value)
            raise ValueError(f"this agentscale reads graph files of version 1, not {shown}")
        return value

    def edge_pairs(self) -> list[tuple[str, str]]:
        """All (source, target) pairs, in file order, without duplicates."""
        pairs: list[tuple[str, str]] = []
        for text in self.edges:
            for pair in parse_edge(text):
                if pair not in pairs:
                    pairs.append(pair)
        return pairs

    def node(self, node_id: str) -> NodeSpec:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)


def parse_edge(text: str) -> list[tuple[str, str]]:
    """Parse 'a -> b', 'a, b -> c', 'a -> b, c' and chains 'a -> b -> c' into pairs.

    Raises ValueError with a user-facing message when the text is not an edge.
    """
    groups = text.split("->")  # members are stripped below (a pattern like \s*->\s* rescans blanks)
    if len(groups) < 2:
        raise ValueError(
            f"edge {text!r} must look like 'a -> b' or 'a, b -> c' (in a `[...]` list a comma ends an item: "
            "quote an edge that has one, or give one `- a, b -> c` line per edge)"
        )
    ids = []
    for group in groups:
        members = [part.strip() for part in group.split(",")]
        if not all(members):
            raise ValueError(f"edge {text!r} has an empty node id")
        ids.append(members)
    pairs: list[tuple[str, str]] = []
    for sources, targets in itertools.pairwise(ids):
        pairs.extend((source, target) for source in sources for target in targets)
    return pairs
