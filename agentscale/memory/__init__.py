"""The behavior handbook ("Metacognitive Reuse", Didolkar et al. 2025): distil, store, retrieve, inject.

- :mod:`~agentscale.memory.build`: solve → reflect → extract, from a task or a stored run.
- :mod:`~agentscale.memory.build_inputs`: which model a build calls (route, alias, a stored run's model)
  and which topic a build from a run files its behaviors under.
- :mod:`~agentscale.memory.extract`: parsing extraction replies, name normalisation, filters, citations.
- :mod:`~agentscale.memory.handbook`: the handbook in SQLite (dedup on insert, counters, prune, export/import).
- :mod:`~agentscale.memory.retrieve`: embedding top-k (all-MiniLM-L6-v2, extra `embed`) or BM25.
- :mod:`~agentscale.memory.inject`: a graph's `memory:` at run time (prompt block, citation tracking).

>>> from agentscale.memory import normalize_name
>>> normalize_name("Inclusion-Exclusion Principle")
'behavior_inclusion_exclusion_principle'
"""

from agentscale.memory.build import BuildReport, BuildSettings, HandbookBuilder
from agentscale.memory.build_inputs import build_model, resolve_model, run_topic
from agentscale.memory.embed import BM25, MiniLMEmbedder, default_embedder, embed_extra_installed
from agentscale.memory.extract import Proposal, check_proposals, find_citations, normalize_name
from agentscale.memory.handbook import Handbook, HandbookNotFound, InsertReport, import_handbook, list_handbooks
from agentscale.memory.inject import GraphMemory, behavior_block, record_outcome, with_handbook
from agentscale.memory.retrieve import Retrieved, Retriever

__all__ = [
    "BM25",
    "BuildReport",
    "BuildSettings",
    "GraphMemory",
    "Handbook",
    "HandbookBuilder",
    "HandbookNotFound",
    "InsertReport",
    "MiniLMEmbedder",
    "Proposal",
    "Retrieved",
    "Retriever",
    "behavior_block",
    "build_model",
    "check_proposals",
    "default_embedder",
    "embed_extra_installed",
    "find_citations",
    "import_handbook",
    "list_handbooks",
    "normalize_name",
    "record_outcome",
    "resolve_model",
    "run_topic",
    "with_handbook",
]
