"""Copy a finished `admap map` run's figure and region table into results/, with its provenance.

    HF_HUB_OFFLINE=1 admap map --out runs/demo
    python scripts/make_results.py runs/demo --name demo

Writes results/<name>_map.png, results/<name>_regions.csv (one row per region) and
results/<name>_regions.md (the same table, with the data, models, machine and command).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

import pandas as pd

from admap.datamap import REGION_LABELS, REGIONS, UNMAPPED
from admap.plot import markdown_table
from admap.provenance import machine_line


def region_table(run_dir: Path) -> pd.DataFrame:
    map_table = pd.read_parquet(run_dir / "map.parquet")
    scores = pd.read_parquet(run_dir / "scores.parquet")
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = []
    for region in (*REGIONS, UNMAPPED):
        members = map_table[map_table["region"] == region]
        member_scores = scores[scores["region"] == region]
        rows.append(
            {
                "region": region,
                "label": REGION_LABELS[region],
                "instructions": len(members),
                "responses": len(member_scores),
                "dpo_pairs": summary["pairs"].get(region, {}).get("pairs", 0),
                "mean_score": members["mean_score"].mean(),
                "mean_score_variance": members["score_variance"].mean(),
                "mean_rating": member_scores["rating"].mean(),
                "mean_response_words": member_scores["response_words"].mean(),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", default="demo")
    parser.add_argument("--results", type=Path, default=Path(__file__).parents[1] / "results")
    arguments = parser.parse_args()
    run_dir, results = arguments.run_dir, arguments.results
    results.mkdir(exist_ok=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    table = region_table(run_dir)
    table.to_csv(results / f"{arguments.name}_regions.csv", index=False, float_format="%.4f")
    shutil.copyfile(run_dir / "map.png", results / f"{arguments.name}_map.png")
    source = Path(summary["dataset"]["source"])
    repo = Path(__file__).resolve().parents[1]
    shown_source = source.relative_to(repo) if source.is_relative_to(repo) else source
    machine = f"{machine_line()}, {platform.system()}"
    scores = pd.read_parquet(run_dir / "scores.parquet")
    agreement = scores[["alignment_score", "rating"]].dropna().corr(method="spearman").iloc[0, 1]
    length = scores[["alignment_score", "response_words"]].dropna().corr(method="spearman").iloc[0, 1]
    lines = [
        f"# Regions of `{source.name}`",
        "",
        f"- data: {shown_source} ({summary['dataset']['format']}; "
        f"{summary['dataset']['instructions']} instructions, {summary['dataset']['responses']} responses)",
        f"- score: {summary['scorer']['label']}; proxies: {summary['proxy_generator']}",
        f"- regions: {summary['thresholds']['method']} split; variance boundary "
        f"{summary['thresholds']['variance']:.4f}, mean boundary {summary['thresholds']['mean']:.4f}",
        f"- machine: {machine}; admap {summary['admap_version']}, torch {summary['versions'].get('torch')}",
        f"- per response, Spearman of alignment score with the dataset's rating: {agreement:.3f}; "
        f"with response length in words: {length:.3f}",
        f"- run took {sum(summary['timings_s'].values()):.1f} s ({summary['timings_s']})",
        f"- command: `{summary['command']}`, then `python scripts/make_results.py {run_dir} --name {arguments.name}`",
        "",
        markdown_table(table),
        "",
    ]
    (results / f"{arguments.name}_regions.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
