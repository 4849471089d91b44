#!/usr/bin/env bash
# `hearth eval` side by side with llama.cpp's own llama-perplexity on the same files and
# text: one JSON line each (perplexity, mean and 99th-percentile KL divergence, same top
# token %). llama-perplexity is not part of Hearth: build it from a llama.cpp source tree
# (for example the one llama-cpp-python's sdist vendors: cmake -B build -DLLAMA_CURL=OFF
# && cmake --build build --target llama-perplexity) and pass its path.
#
#   scripts/eval_vs_llama_perplexity.sh LLAMA_PERPLEXITY MODEL REFERENCE TEXT [HEARTH]
set -euo pipefail
lp=$1 model=$2 reference=$3 text=$4
hearth=${5:-${CARGO_TARGET_DIR:-$HOME/.cache/hearth/target}/release/hearth}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LD_LIBRARY_PATH="$(dirname "$lp")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

"$hearth" eval "$model" --reference "$reference" --text "$text" --ctx 512 --json --no-record 2>/dev/null |
	python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"tool":"hearth eval","perplexity":r["perplexity"],"reference_perplexity":r["reference_perplexity"],"kl_mean":r["kl_mean"],"kl_p99":r["kl_p99"],"same_top_percent":r["same_top_percent"],"tokens_scored":r["tokens_scored"]}))'

"$lp" -m "$reference" -f "$text" -c 512 -b 512 --kl-divergence-base "$work/base.kld" >"$work/base.log" 2>&1
"$lp" -m "$model" -c 512 -b 512 --kl-divergence-base "$work/base.kld" --kl-divergence >"$work/model.log" 2>&1
python3 - "$work/model.log" <<'PY'
import json, re, sys
log = open(sys.argv[1], errors="replace").read()
num = lambda pattern: float(re.search(pattern, log).group(1))
print(json.dumps({
    "tool": "llama-perplexity",
    "perplexity": num(r"Mean PPL\(Q\)\s*:\s*([\d.]+)"),
    "reference_perplexity": num(r"Mean PPL\(base\)\s*:\s*([\d.]+)"),
    "kl_mean": num(r"Mean\s+KLD:\s*([\d.]+)"),
    "kl_p99": num(r"99\.0%\s+KLD:\s*([\d.]+)"),
    "same_top_percent": num(r"Same top p:\s*([\d.]+)"),
}))
PY
