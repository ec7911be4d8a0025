#!/usr/bin/env bash
# One GPU check of duoguard, run from the repository root on a CUDA machine that has python3 with torch,
# transformers, accelerate ... but not trl, datasets, hydra-core/omegaconf (the device image):
#
#     bash scripts/gpu_check.sh                                   # carry .whl (wheels) and .gpu_data (bench inputs)
#     GPU_CHECK_DEVICE=cpu GPU_CHECK_SMALL=1 GPU_CHECK_PYTHON=.venv/bin/python GPU_CHECK_INSTALL=0 \
#         OUT=/tmp/gpucheck_out bash scripts/gpu_check.sh         # the same parts on CPU at toy sizes
#
# Other switches: GPU_CHECK_PARTS=B,C1 (run only those), GPU_CHECK_BUDGET=420 (seconds for the whole script),
# GPU_CHECK_TIMEOUT_SCALE=8 (every part's timeout times 8: the slow CPU test), GPU_CHECK_WORK (scratch folder).
#
# Before (on a machine with pip and ../shared/data; both folders are git-ignored): `.whl/` holds the Python 3.12
# x86-64 wheels of what the CUDA machine lacks (trl, transformers, datasets, hydra-core, omegaconf, antlr4-python3-
# runtime, dill, multiprocess, fsspec, regex, langdetect; `pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux2014_x86_64 -d .whl NAME==VERSION` at the venv's versions, `pip wheel
# --no-deps -w .whl` for the two sdists), and `.gpu_data/` copies scripts/bench_guardrail.py's DATA_FILES.
#
# Setup: the wheels in .whl/ are installed into /tmp/site (pip --target, no index, no deps) and put first on
# PYTHONPATH with the repository root (duoguard imports from the checkout; duoguard/config/paths.py finds
# conf/ beside the package). Then, in order of value, each under its own `timeout` and within an overall
# budget (GPU_CHECK_BUDGET seconds), a failing part never stopping the next:
#   A  game      the tiny preset's game through `python -m duoguard game` on the GPU, bf16, 2 rounds
#   B  memory    scripts/bench_memory.py: duoguard/plan.py's estimate vs torch.cuda.max_memory_allocated
#   C1 guardrail scripts/bench_guardrail.py, random Qwen2.5-0.5B, prompts from .gpu_data/
#   C2 safedpo   scripts/bench_safedpo.py, the 1b shape, 10 timed steps, one repeat
#   C3 game      scripts/bench_game.py, a 1.5B random generator, local runtime, 8 prompts per step, 2 rounds
# Everything printed goes to $OUT/gpu_check.log; $OUT/results.jsonl gets one JSON line per part (status,
# exit code, seconds, the part's own JSON output). Two files only: the device returns at most 8.

set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/gpucheck_out}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SMALL=${GPU_CHECK_SMALL:-0}
PY=${GPU_CHECK_PYTHON:-python3}
INSTALL=${GPU_CHECK_INSTALL:-1}
BUDGET=${GPU_CHECK_BUDGET:-420}  # seconds for everything; a part that would start with < 15 s left is skipped
SCALE=${GPU_CHECK_TIMEOUT_SCALE:-1}  # multiplies every part's timeout (a slow CPU test)
WORK=${GPU_CHECK_WORK:-/tmp/gpucheck_work}
PARTS=${GPU_CHECK_PARTS:-A,B,C1,C2,C3}  # which parts run (e.g. GPU_CHECK_PARTS=B,C1 for a rerun)
mkdir -p "$OUT" "$WORK"
LOG=$OUT/gpu_check.log
RESULTS=$OUT/results.jsonl
: >"$LOG"
: >"$RESULTS"
START=$(date +%s)

export PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
export TOKENIZERS_PARALLELISM=false
export DUOGUARD_CACHE=$WORK/cache  # the tiny offline models are built here
export DUOGUARD_BENCH_DATA=$ROOT/.gpu_data  # scripts/bench_guardrail.py's prompts

say() { echo "[gpu_check $(date -u +%H:%M:%S) +$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }

# ---------------------------------------------------------------- setup
if [ "$INSTALL" = 1 ]; then
    say "installing $(ls .whl/*.whl | wc -l) wheels from .whl into /tmp/site"
    if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl >>"$LOG" 2>&1; then
        export PYTHONPATH=/tmp/site:$ROOT
    else
        say "WHEEL INSTALL FAILED (see above); the parts run anyway with the machine's packages"
        export PYTHONPATH=$ROOT
    fi
else
    export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi

{
    command -v nvidia-smi >/dev/null && nvidia-smi
    $PY - <<'EOF'
import importlib, importlib.metadata as md, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "transformers", "trl", "accelerate", "datasets", "hydra-core", "omegaconf", "tokenizers",
             "huggingface-hub", "safetensors", "pyarrow", "fsspec", "regex", "peft", "numpy"):
    try:
        print(f"{name:16s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:16s} MISSING")
import torch
print("cuda available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for mod in ("trl", "datasets", "hydra", "duoguard.cli", "duoguard.roles.generator"):
    try:
        m = importlib.import_module(mod)
        print("import", mod, "ok", getattr(m, "__file__", ""))
    except Exception as e:
        print("import", mod, "FAILED", type(e).__name__, e)
from duoguard.config import conf_dir
print("conf_dir", conf_dir())
EOF
} 2>&1 | tee -a "$LOG"

# ---------------------------------------------------------------- one part
# part NAME SECONDS JSON_FILE CMD...: runs CMD under `timeout` (at most the budget left), its output into the
# log, then appends {"part", "rc", "status", "seconds", "result": <JSON_FILE's content or null>} to results.jsonl.
part() {
    local name=$1 limit=$2 json=$3
    shift 3
    case ",$PARTS," in *",${name%%_*},"*) ;; *) return ;; esac
    local left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt 15 ]; then
        say "SKIP $name: the overall budget of ${BUDGET}s is spent"
        echo "{\"part\": \"$name\", \"status\": \"skipped\", \"rc\": null, \"seconds\": 0, \"result\": null}" >>"$RESULTS"
        return
    fi
    limit=$((limit * SCALE))
    [ "$limit" -gt "$left" ] && limit=$left
    say "BEGIN $name (timeout ${limit}s): $*"
    rm -f "$json"
    local t0 rc
    t0=$(date +%s)
    timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    local seconds=$(($(date +%s) - t0))
    local status=ok
    [ $rc -ne 0 ] && status=failed
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status=timeout
    say "END $name: $status (rc $rc, ${seconds}s)"
    $PY - "$name" "$status" "$rc" "$seconds" "$json" >>"$RESULTS" 2>>"$LOG" <<'EOF'
import json, sys
from pathlib import Path
name, status, rc, seconds, path = sys.argv[1:]
result = None
if path and Path(path).is_file():
    text = Path(path).read_text()
    try:
        result = json.loads(text)
    except ValueError:  # a JSON-lines file (the game's metrics)
        result = [json.loads(x) for x in text.splitlines() if x.strip()]
print(json.dumps({"part": name, "status": status, "rc": int(rc), "seconds": int(seconds), "result": result}))
EOF
}

# ---------------------------------------------------------------- the parts
if [ "$DEVICE" = cpu ]; then
    BF16=()  # the tiny preset's fp32 on CPU
    HW=()
else
    BF16=(guardrail.model.precision=bf16 generator.model.precision=bf16 target.model.precision=bf16)
    HW=(hardware.gpus_per_node=1 hardware.gpu_memory_gib=141)  # the memory plan checks the run at start
fi

SHRINK=()
# a CPU test: one warm-up epoch instead of tiny_cpu's 15 (minutes on two shared cores)
[ "$SMALL" = 1 ] && SHRINK=(guardrail.train.epochs=1 game.guardrail_epochs=1)

# A: the app entry itself (Hydra, the memory plan check, both roles, two rounds) on the device
part A_game 75 "$WORK/game/metrics.jsonl" \
    $PY -m duoguard game logger=none progress=false game.rounds=2 "runtime.device=$DEVICE" \
    "${BF16[@]}" "${HW[@]}" "${SHRINK[@]}" "output_dir=$WORK/game"

# B: the memory plan against measured peaks
if [ "$SMALL" = 1 ]; then
    part B_memory 110 "$WORK/memory.json" $PY scripts/bench_memory.py --device "$DEVICE" --shapes tiny \
        --json "$WORK/memory.json"
else
    part B_memory 110 "$WORK/memory.json" $PY scripts/bench_memory.py --device "$DEVICE" --shapes 0.5b,1.5b \
        --json "$WORK/memory.json"
fi

# C: the benchmarks' GPU commands, shrunk
if [ "$SMALL" = 1 ]; then
    part C1_bench_guardrail 45 "$WORK/bench_guardrail.json" $PY scripts/bench_guardrail.py --models tiny \
        --device "$DEVICE" --n 64 --protocol-n 4 --repeats 1 --cache "$DUOGUARD_CACHE" \
        --json "$WORK/bench_guardrail.json"
    part C2_bench_safedpo 90 "$WORK/bench_safedpo.json" $PY scripts/bench_safedpo.py --shapes tiny \
        --device "$DEVICE" --steps 2 --warmup 1 --repeats 1 --json "$WORK/bench_safedpo.json"
    part C3_bench_game 150 "$WORK/bench_game.json" $PY scripts/bench_game.py --device "$DEVICE" \
        --runtimes local --sizes 2 --rounds 2 --json "$WORK/bench_game.json"
else
    part C1_bench_guardrail 45 "$WORK/bench_guardrail.json" $PY scripts/bench_guardrail.py --models qwen2.5-0.5b \
        --device "$DEVICE" --n 2048 --protocol-n 64 --repeats 2 --cache "$DUOGUARD_CACHE" \
        --json "$WORK/bench_guardrail.json"
    part C2_bench_safedpo 90 "$WORK/bench_safedpo.json" $PY scripts/bench_safedpo.py --shapes 1b \
        --device "$DEVICE" --steps 10 --warmup 3 --repeats 1 --json "$WORK/bench_safedpo.json"
    part C3_bench_game 150 "$WORK/bench_game.json" $PY scripts/bench_game.py --shape 1.5b --device "$DEVICE" \
        --runtimes local --sizes 8 --rounds 2 --json "$WORK/bench_game.json"
fi

say "done in $(($(date +%s) - START))s; parts (full output in $LOG):"
$PY - "$RESULTS" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
KEEP = {  # the numbers worth reading in the tool's output tail; everything is in results.jsonl
    "A_game": ("round", "generated", "accepted", "fool_rate", "seconds_round", "seconds_rollout",
               "seconds_guardrail_train"),
    "B_memory": ("case", "shape", "precision", "batch_x_len", "planned_gib", "measured_gib", "ratio", "seconds",
                 "error"),
    "C1_bench_guardrail": ("model", "dtype", "ours_inputs_per_s", "protocol_inputs_per_s", "speedup",
                           "max_abs_prob_diff"),
    "C2_bench_safedpo": ("shape", "trl_step_ms", "safedpo_step_ms", "overhead_pct", "trl_peak_mib",
                         "safedpo_peak_mib"),
    "C3_bench_game": ("samples", "round", "local_s", "parts_s", "grpo_s", "guardrail_s", "local_ratio",
                      "gen_tokens_per_s"),
}
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"  {r['part']:20s} {r['status']:8s} rc={r['rc']} {r['seconds']}s")
    rows = r["result"] if isinstance(r["result"], list) else []
    for row in rows:
        keep = {k: row.get(k) for k in KEEP.get(r["part"], ()) if k in row}
        print("    " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in keep.items()}))
EOF
exit 0
