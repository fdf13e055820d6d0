#!/usr/bin/env bash
# Launch train_sft/train.py under torchrun with the right process count, on GPUs or on CPU.
#
#   bash train_sft/launch.sh CONFIG [key=value ...]
#   bash train_sft/launch.sh train_sft/configs/tiny-cpu.yaml data=data.json out=runs/tiny
#   bash train_sft/launch.sh train_sft/configs/llama-7b-8gpu.yaml model=/models/llama-7b data=alpaca_data.json
#
# Processes per node: NPROC, else one per visible GPU (CUDA_VISIBLE_DEVICES is honoured), else 2
# CPU processes with the gloo backend. Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and
# MASTER_PORT (torchrun's usual meaning) on every node. PYTHON picks the interpreter.
# First the config, the model folder and the data are checked in one process (python -m
# selfinstruct.train_sft.train --check ...): a bad input stops here with one "Error: ..." line
# and exit status 2, before any worker starts. SKIP_CHECK=1 skips that.
set -euo pipefail

PYTHON="${PYTHON:-python}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"

if [ $# -lt 1 ]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi

gpus=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
if [ -z "${NPROC:-}" ]; then
    if [ "$gpus" -gt 0 ]; then NPROC="$gpus"; else NPROC=2; fi
fi
if [ "$gpus" -eq 0 ]; then
    echo "launch: no GPU visible: $NPROC CPU processes per node, gloo backend"
fi

if [ "${SKIP_CHECK:-0}" != 1 ]; then
    WORLD_SIZE=$((NPROC * NNODES)) "$PYTHON" -m selfinstruct.train_sft.train --check "$@" >/dev/null
fi

if [ "$NNODES" -gt 1 ] || [ -n "${MASTER_ADDR:-}" ]; then
    rendezvous=(--nnodes "$NNODES" --node_rank "$NODE_RANK"
                --master_addr "${MASTER_ADDR:?set MASTER_ADDR to the address of node 0}"
                --master_port "${MASTER_PORT:-29500}")
else
    rendezvous=(--standalone)     # one node: torchrun picks a free port
fi
exec "$PYTHON" -m torch.distributed.run "${rendezvous[@]}" --nproc_per_node "$NPROC" \
    -m selfinstruct.train_sft.train "$@"
