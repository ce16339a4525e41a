"""The dataset card (``README.md``) of a run exported for the hub, written from its ``summary.json`` alone.

Its YAML front matter is what the hub and `datasets` read: ``configs`` (one per subset with pairs, plus
``map``; the default one marked), the license, tags, task category and size. The prose says where the
pairs came from (the source dataset, its revision and the commit read), how they were scored and split
(scorer, proxies, region thresholds and sizes), what each configuration holds, the command that made the
run, admap's version, and how to cite the method. A local source file is named without its folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from admap.hub.export import ExportedConfig

PAPER_URL = "https://arxiv.org/abs/2505.23114"
CITATION = """@misc{lee2025alignmentdatamap,
  title         = {Alignment Data Map for Efficient Preference Data Selection and Diagnosis},
  author        = {Seohyeong Lee and Eunwon Kim and Hwaran Lee and Buru Chang},
  year          = {2025},
  eprint        = {2505.23114},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CL},
  url           = {https://arxiv.org/abs/2505.23114}
}"""
TAGS = ["dpo", "preference", "alignment", "alignment-data-map", "admap", "trl"]
# The hub's size categories, by their upper bound in rows.
SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
]
# What each of `admap map`'s subsets holds; `admap select`'s others are described by their name.
SUBSET_DESCRIPTIONS = {
    "high_mean": "aligned instructions: high mean score, low variance (the subset the paper trains DPO on)",
    "low_mean": "misaligned instructions: low mean score",
    "high_variance": "partially aligned instructions: high score variance",
    "random": "random instructions, as many as high_mean",
    "full": "every mapped instruction (the paper's baseline: all of the data)",
    "map": "one row per instruction: mean and variance of its responses' scores, region, why it is unmapped",
}
DEMO_SOURCE = "demo"


def dataset_card(
    summary: dict,
    configs: list[ExportedConfig],
    *,
    default_config: str | None,
    repo_id: str | None = None,
    license: str | None = None,
    figure: bool = True,
) -> str:
    """The card's text: YAML front matter, then prose. ``license``: the card's license, by default the
    one the source dataset's hub card named, else ``other`` with a note."""
    hub = summary.get("dataset", {}).get("hub") or {}
    license = license or hub.get("license")
    metadata: dict[str, Any] = {
        "license": license or "other",
        "task_categories": ["text-generation"],
        "tags": TAGS,
        "pretty_name": f"Alignment Data Map subsets of {source_name(summary)}",
        "size_categories": [size_category(max((c.rows for c in configs), default=0))],
    }
    if hub.get("repo_id"):
        metadata["source_datasets"] = [hub["repo_id"]]
    metadata["configs"] = [
        {
            "config_name": config.name,
            **({"default": True} if config.name == default_config else {}),
            "data_files": [{"split": "train", "path": config.data_files}],
        }
        for config in configs
        if config.files
    ]
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000)
    sections = [
        f"# {metadata['pretty_name']}",
        _introduction(summary, default_config, figure),
        _source_section(summary, license),
        _method_section(summary),
        _configs_section(configs, default_config),
        _usage_section(configs, default_config, repo_id),
        _provenance_section(summary),
        f"## Citation\n\nThe method is [Alignment Data Map]({PAPER_URL}):\n\n```bibtex\n{CITATION}\n```",
    ]
    return f"---\n{front}---\n\n" + "\n\n".join(sections) + "\n"


def source_name(summary: dict) -> str:
    """How the card names the source: the hub id, the demo set, or a local file's name without its folder."""
    hub = summary.get("dataset", {}).get("hub") or {}
    if hub.get("repo_id"):
        return hub["repo_id"]
    dataset = summary.get("config", {}).get("input", {}).get("dataset")
    if dataset == DEMO_SOURCE:
        return "the admap demo set"
    return Path(dataset or summary.get("dataset", {}).get("source") or "unknown").name


def size_category(rows: int) -> str:
    for bound, category in SIZE_CATEGORIES:
        if rows < bound:
            return category
    return "n>100M"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _facts(rows: list[list[Any]]) -> str:
    return "\n".join(f"- **{name}**: {value}" for name, value in rows)


def _introduction(summary: dict, default_config: str | None, figure: bool) -> str:
    text = (
        f"DPO preference pairs from {_source_link(summary)}, split by their "
        f"[Alignment Data Map]({PAPER_URL}) into aligned, misaligned and partially aligned instructions by "
        f"admap {summary.get('admap_version', '')}. Every response was given "
        "an alignment score; every instruction the mean and variance of its responses' scores; the "
        "regions split the instructions by them."
    )
    if default_config:
        text += f" `load_dataset` reads `{default_config}` unless another configuration is named."
    if figure:
        text += "\n\n![The Alignment Data Map: mean score against variance, by region](map.png)"
    return text


def _source_link(summary: dict) -> str:
    hub = summary.get("dataset", {}).get("hub") or {}
    if hub.get("repo_id"):
        return f"[{hub['repo_id']}](https://huggingface.co/datasets/{hub['repo_id']})"
    return source_name(summary)


def _source_section(summary: dict, license: str | None) -> str:
    dataset = summary.get("dataset", {})
    hub = dataset.get("hub") or {}
    rows = [["dataset", _source_link(summary)], ["format", dataset.get("format")]]
    if hub:
        part = {"configuration": hub.get("name"), "folder": hub.get("data_dir")}
        rows += [[key, f"`{value}`"] for key, value in part.items() if value]
        if hub.get("data_files"):
            rows.append(["files", ", ".join(f"`{pattern}`" for pattern in hub["data_files"])])
        rows += [
            ["split", hub.get("split")],
            ["revision asked", hub.get("revision") or "the main branch"],
            ["commit read", f"`{hub['commit']}`" if hub.get("commit") else "not recorded (read offline)"],
        ]
    limit = summary.get("config", {}).get("input", {}).get("limit")
    counts = ", ".join(
        f"{dataset.get(key, 0)} {label}"
        for key, label in (
            ("rows_read", "read"),
            ("rows_loaded", "loaded"),
            ("rows_skipped", "skipped"),
            ("rows_duplicate", "duplicate"),
            ("rows_filtered", "filtered out"),
        )
    )
    rows.append(["rows", counts + (f" (the first {limit} read)" if limit else "")])
    rows.append(["instructions", dataset.get("instructions")])
    text = "## Source\n\n" + _facts(rows)
    if not license:
        text += (
            "\n\nThe license is given as `other`: the source dataset's was not recorded (a local file, or read "
            "offline). These pairs are drawn from it, so its license applies: check it before using or sharing "
            "them, and set it with `admap push --license`."
        )
    return text


def _method_section(summary: dict) -> str:
    scorer = summary.get("scorer", {})
    thresholds = summary.get("thresholds", {})
    regions = summary.get("regions", {})
    label = scorer.get("label")
    rows = [["scorer", f"`{scorer.get('name')}`" + (f": {label}" if label and label != scorer.get("name") else "")]]
    if scorer.get("model"):
        rows.append(["scorer model", f"`{scorer['model']}`"])
    # The proxies' sources with their counts: none for a scorer that needs no proxy response.
    proxies = summary.get("proxies") or {}
    if proxies:
        rows.append(["proxy responses", ", ".join(f"{source} ({count})" for source, count in proxies.items())])
    rows.append(["region method", f"`{thresholds.get('method')}`"])
    for axis in ("variance", "mean"):
        if thresholds.get(axis) is not None:
            rows.append([f"{axis} threshold", f"{thresholds[axis]:.6g}"])
    rows.append(["regions", ", ".join(f"{name}: {count}" for name, count in regions.items())])
    if summary.get("length_debias"):
        rows.append(["length debiasing", "scores are residuals after regressing them on log response length"])
    rows.append(["seed", summary.get("seed")])
    return "## How the pairs were selected\n\n" + _facts(rows)


def _configs_section(configs: list[ExportedConfig], default_config: str | None) -> str:
    rows = []
    for config in configs:
        what = SUBSET_DESCRIPTIONS.get(config.name, f"written by `admap select` ({config.name})")
        if not config.files:
            what += "; no configuration: it holds no pairs, and `datasets` cannot load an empty split"
        name = f"`{config.name}`" + (" (default)" if config.name == default_config else "")
        rows.append([name, what, config.rows, config.instructions, config.source])
    return (
        "## Configurations\n\nEach has one split, `train`. A subset's rows are the pairs of `pairs/<subset>.jsonl`: "
        "`prompt`, `chosen` and `rejected` as message lists (TRL's conversational preference format), "
        "`instruction_id`, `chosen_id` and `rejected_id`, and any other field the run wrote.\n\n"
        + _table(["configuration", "what it holds", "rows", "instructions", "from the run's"], rows)
    )


def _usage_section(configs: list[ExportedConfig], default_config: str | None, repo_id: str | None) -> str:
    repo = repo_id or "<owner>/<name>"
    name = default_config or next((c.name for c in configs if c.files), "map")
    return (
        "## Use\n\n```python\nfrom datasets import load_dataset\n\n"
        f'pairs = load_dataset("{repo}", "{name}", split="train")\n'
        f'instructions = load_dataset("{repo}", "map", split="train")\n```\n\n'
        "The pairs go to `trl.DPOTrainer` as they are (`train_dataset=pairs`)."
    )


def _provenance_section(summary: dict) -> str:
    rows = [
        ["admap", summary.get("admap_version")],
        ["admap commit", f"`{summary['git_commit']}`" if summary.get("git_commit") else "not a git checkout"],
        ["run", f"`{summary.get('run_id')}`, {summary.get('created')}"],
    ]
    command = summary.get("command")
    text = "## Provenance\n\n" + _facts(rows)
    if command:
        text += f"\n\nThe run was made by:\n\n```bash\n{command}\n```"
    return text
