#!/usr/bin/env bash
# Set up duoguard in ./.venv, idempotently: torch first (a CPU build on machines without an
# NVIDIA GPU, the CUDA build where one is present), then the project in editable mode.
#
#   bash scripts/setup.sh            # runtime only
#   bash scripts/setup.sh dev        # + test tools
#   bash scripts/setup.sh dev,bench  # + benchmark extras (MiniLM weights, scikit-learn)
#
# Environment: PYTHON (interpreter, default python3), TORCH_VERSION (default 2.13.0),
# DUOGUARD_VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VENV="${DUOGUARD_VENV:-.venv}"

"$PYTHON" - <<'PY' || { echo "duoguard needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if has_gpu; then
    echo "[setup] NVIDIA GPU found: installing torch==$TORCH_VERSION (CUDA build)"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
  elif echo "[setup] no GPU: installing torch==$TORCH_VERSION+cpu" && "${PIP[@]}" install "torch==$TORCH_VERSION+cpu"; then
    : # a CPU build that the configured indexes or find-links offer (e.g. a local wheel)
  else
    echo "[setup] no GPU: installing torch==$TORCH_VERSION from PyTorch's CPU index"
    "${PIP[@]}" install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  fi
fi

# Pin whatever torch is now installed, so resolving the project can never swap in another build.
TORCH_PIN="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
CONSTRAINTS="$VENV/duoguard-constraints.txt"
echo "torch==$TORCH_PIN" > "$CONSTRAINTS"

SPEC="."
[ -n "$EXTRAS" ] && SPEC=".[$EXTRAS]"
STAMP="$VENV/.duoguard-installed"
WANT="$("$VENV/bin/python" -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())') $EXTRAS"
if [ -f "$STAMP" ] && grep -qxF "$WANT" "$STAMP"; then
  echo "[setup] duoguard already installed in $VENV (extras: ${EXTRAS:-none})"
else
  echo "[setup] installing duoguard ($SPEC) into $VENV"
  DS_BUILD_OPS=0 "${PIP[@]}" install -c "$CONSTRAINTS" -e "$SPEC"
  echo "$WANT" > "$STAMP"
fi
"$VENV/bin/python" -c "import duoguard, torch; print(f'[setup] duoguard {duoguard.__version__}, torch {torch.__version__}, cuda={torch.cuda.is_available()}')"
