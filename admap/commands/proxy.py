"""`admap proxy`: the proxy (reference) response of every instruction, cached and resumable."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from admap.commands import Command
from admap.config import option, to_dict
from admap.durable import write_jsonl
from admap.generate.cache import ResponseCache
from admap.generate.options import GeneratorOptions
from admap.generate.runner import GenerationStats, build_generator
from admap.inputs import InputOptions
from admap.provenance import provenance
from admap.proxy import attach_proxies

logger = logging.getLogger(__name__)


@dataclass
class ProxyConfig:
    """`admap proxy`: write the proxy (reference) response of every instruction of a dataset."""

    input: InputOptions = option(InputOptions(), "the dataset")
    out: str | None = option(None, "output JSONL (default: runs/<dataset name>/proxies.jsonl)")
    proxy_file: str | None = option(None, "proxies to reuse (keyed by instruction_id or instruction text)")
    generation: GeneratorOptions = option(GeneratorOptions(), "the generator")
    device: str = option("auto", "local models: auto, cpu, cuda, cuda:1, ...")

    def __post_init__(self) -> None:
        if self.generation.generator == "none":
            raise ValueError("admap proxy needs a generator (generator 'none' writes nothing)")

    @property
    def out_path(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.input.stem / "proxies.jsonl"


def fill_proxies(
    instructions: pd.DataFrame,
    *,
    proxy_file: str | None,
    options: GeneratorOptions,
    device: str,
    scope: Path,
    progress: bool,
) -> tuple[pd.DataFrame, GenerationStats | None]:
    """Proxies from the dataset column, then ``proxy_file``, then the configured generator through the cache."""
    generator = build_generator(options, device=device, progress=progress)
    cache = ResponseCache(options.cache_dir) if options.cache else None
    table, stats = attach_proxies(
        instructions,
        proxy_file=proxy_file,
        generator=generator,
        system_prompt=options.system_prompt,
        cache=cache,
        scope=str(scope.resolve()),
    )
    if stats is not None:
        stats.price(options.price_input_per_million, options.price_output_per_million)
    return table, stats


def write_proxies(instructions: pd.DataFrame, path: Path) -> int:
    """Write the instructions that have a proxy, in input order, atomically; returns how many."""
    proxies = instructions.loc[instructions["proxy_response"].notna()]
    columns = ["instruction_id", "instruction", "proxy_response", "proxy_source"]
    write_jsonl(proxies[columns].to_dict(orient="records"), path)
    return len(proxies)


def run_proxy(config: ProxyConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Run `admap proxy`: the proxies JSONL plus ``<name>.summary.json`` beside it; returns the JSONL path."""
    out = config.out_path
    data = config.input.read(progress=progress)
    start = time.perf_counter()
    instructions, stats = fill_proxies(
        data.instructions,
        proxy_file=config.proxy_file,
        options=config.generation,
        device=config.device,
        scope=out,
        progress=progress,
    )
    written = write_proxies(instructions, out)
    summary = {
        **provenance(command),
        "config": to_dict(config),
        "dataset": data.report(),
        "generator": config.generation.label,
        "proxies_written": written,
        "missing": instructions.loc[instructions["proxy_response"].isna(), "instruction_id"].tolist(),
        "proxies": instructions["proxy_source"].fillna("missing").value_counts().to_dict(),
        "generation": stats.to_dict() if stats else None,
        "skipped": [s.to_dict() for s in data.skipped],
        "seconds": round(time.perf_counter() - start, 3),
    }
    summary_path = out.with_name(f"{out.name.split('.')[0]}.summary.json")
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    logger.info("%s: %d of %d proxies (%s)", out, written, len(instructions), summary["generation"])
    return out


COMMAND = Command("proxy", ProxyConfig, run_proxy, "write the proxy response of every instruction (cached, resumable)")
