"""`admap bench`: the scoring core measured against named peers in one run (plain
sentence-transformers ``encode``, the paper's per-pair loop, the machine's own matmul peak), the
map stage at a million instructions, and a cached rerun against the first run."""
