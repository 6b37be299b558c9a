#!/usr/bin/env bash
# One prepared GPU session (issue 3): throughput + correctness bench, joint-fusion training
# throughput (issue 8), the CUDA-only tests, and the demo trained end to end on the GPU.
# Writes logs under $1 (default: gpu_out).
#   bash bench/run_gpu_checks.sh OUTDIR            # everything (about 4 min on an H200)
#   bash bench/run_gpu_checks.sh OUTDIR no-bench   # tests and demo only
#   bash bench/run_gpu_checks.sh OUTDIR no-demo    # bench and tests only
#   bash bench/run_gpu_checks.sh OUTDIR quick      # CPU smoke test of this script
# On the lent device machine (no package index there), the pure-Python wheels in .whl/ are
# installed into /tmp/site first; elsewhere `pip install -e .` is enough.
set -o pipefail
export PYTHONUNBUFFERED=1
out=${1:-gpu_out}; mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
if [ "$2" = quick ]; then
  bench_args="--device cpu --quick"; demo_args="--device cpu --n 60 --epochs 1 --size 32"
  joint_args="--device cpu --quick"
else
  bench_args="--compile"; demo_args="--device cuda --size 128 --epochs 6"
  joint_args="--device cuda --size 224 --amp --batch-size 128 --steps 30 --warmup 5"
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true) | tee "$out/smi.txt"
python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"
[ "$2" = no-bench ] || timeout 330 python3 bench/bench_gpu.py $bench_args --json "$out/gpu.json" 2>&1 | tee "$out/gpu.log"
# joint fusion (3 ResNet18 branches + clinical, concat and gated heads): training throughput, bf16, 224 px
[ "$2" = no-bench ] || timeout 150 python3 bench/bench_joint.py --throughput $joint_args --json "$out/joint.json" \
  2>&1 | tee "$out/joint.log"
timeout 120 python3 -m pytest -q -p no:cacheprovider -rs tests/fusion/test_cuda.py \
  tests/fusion/test_transforms.py tests/fusion/test_runtime.py > "$out/pytest.log" 2>&1
grep -E "^(FAILED|ERROR|SKIPPED)|passed|failed" "$out/pytest.log"
[ "$2" = no-demo ] && exit 0
start=$(date +%s)
timeout 170 python3 -m fusion.demo --out /tmp/gpu_demo --data /tmp/gpu_demo_data $demo_args \
  > "$out/demo.log" 2>&1; echo "demo rc=$? in $(( $(date +%s) - start )) s" | tee -a "$out/demo.log"
tail -25 "$out/demo.log"
cp /tmp/gpu_demo/cv/metrics.csv "$out/demo_metrics.csv" 2>/dev/null
cp /tmp/gpu_demo/cv/run_manifest.json "$out/demo_manifest.json" 2>/dev/null
ls "$out"
