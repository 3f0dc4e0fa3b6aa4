"""Token counts and latency of a simulated call, from a roofline model of one GPU.

Token counts follow the Agent-REINFORCE cost model: a node with d inputs reads the question plus d
typical completions (prompt = item prompt tokens + d · item completion tokens) and writes the item's
typical completion scaled by its role (a verifier writes short score lines, a critic a little more
than an assistant). So the spend ledger's FLOPs track `CandidateGraph.compute`.

Latency is what one call would take alone on the GPU assumed here, an NVIDIA A100-SXM4-80GB
(312 TFLOP/s dense BF16, 2.04 TB/s HBM), weights and KV cache in BF16, batch size 1:

- prefill is compute-bound: prefill FLOPs / (peak · `FLOPS_EFFICIENCY`);
- decode is memory-bound: every generated token reads all weights (2 bytes per parameter) plus the
  KV cache so far (2 · layers · kv_dim · 2 bytes per cached token), at bandwidth · `BW_EFFICIENCY`;
- each phase takes the larger of its compute and memory times, plus `OVERHEAD_S` per call
  (scheduling, tokenisation, network).

70B models do not fit on one 80 GB card; they are assumed to run tensor-parallel on 2 GPUs with
ideal scaling. FLOPs use the same formula as `agentscale.models.cost`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentscale.sim.population import SimModel


@dataclass(frozen=True)
class Gpu:
    name: str
    peak_flops: float
    memory_bandwidth: float  # bytes per second


A100 = Gpu("NVIDIA A100-SXM4-80GB", 312e12, 2.039e12)
FLOPS_EFFICIENCY = 0.5
BW_EFFICIENCY = 0.75
OVERHEAD_S = 0.02
BYTES_PER_VALUE = 2  # BF16


def call_tokens(
    prompt_tokens: np.ndarray, completion_tokens: np.ndarray, inputs: int, length_factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """(prompt, completion) tokens of a call with `inputs` predecessors, per item (numpy arrays)."""
    prompt = prompt_tokens + inputs * completion_tokens
    completion = np.maximum(1.0, np.round(completion_tokens * length_factor))
    return prompt, completion


def call_latency(
    model: SimModel, prompt: np.ndarray | float, completion: np.ndarray | float, gpu: Gpu = A100
) -> np.ndarray:
    """Seconds for one call (works on scalars and numpy arrays)."""
    params = model.params_b * 1e9
    layers, width = float(model.n_layers), float(model.d_model)
    np_, nd = np.asarray(prompt, dtype=float), np.asarray(completion, dtype=float)
    flops_rate = model.gpus * gpu.peak_flops * FLOPS_EFFICIENCY
    bytes_rate = model.gpus * gpu.memory_bandwidth * BW_EFFICIENCY
    weight_bytes = BYTES_PER_VALUE * params
    kv_per_token = 2 * layers * model.kv_dim * BYTES_PER_VALUE
    prefill_flops = 2 * params * np_ + 2 * layers * width * np_ * (np_ + 1)
    decode_flops = 2 * params * nd + 2 * layers * width * nd * (2 * np_ + nd + 1)
    prefill_s = np.maximum(prefill_flops / flops_rate, (weight_bytes + kv_per_token * np_) / bytes_rate)
    decode_bytes = nd * weight_bytes + kv_per_token * (nd * np_ + nd * (nd - 1) / 2)
    decode_s = np.maximum(decode_flops / flops_rate, decode_bytes / bytes_rate)
    return np.asarray(OVERHEAD_S + prefill_s + decode_s)
