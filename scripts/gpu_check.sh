#!/usr/bin/env bash
# cnnlab's GPU checks, in about 8 minutes on one CUDA GPU.
#
#   bash scripts/gpu_check.sh --prepare [AIRBENCH_CHECKOUT]   # here, with the data and pip: fills .gpu/
#   bash scripts/gpu_check.sh                                 # on the GPU machine, from the repository root
#   PY=.venv/bin/python bash scripts/gpu_check.sh --dry-run   # every step on this CPU at tiny sizes: checks
#                                                             # the script itself (airbench's run is skipped)
#
# --prepare copies MNIST and the CIFAR-10 JPEG copy from ../shared/data (or $CNNLAB_DATA) into .gpu/data,
# downloads the one pure-Python wheel the GPU machine lacks (tomli-w) into .gpu/whl and, given a checkout of
# github.com/KellerJordan/cifar10-airbench, copies its airbench94_muon.py to .gpu/ (.gpu/ is git-ignored:
# neither the data nor airbench's code is ever committed). Carry .gpu along to the GPU machine.
#
# On the GPU it installs cnnlab into that machine's own Python (which holds its own CUDA torch), then:
#   1. mnist-cnn, the lab's 5 epochs: test accuracy (>= 0.985 expected) and seconds
#   2. that GPU-trained run on the CPU (CUDA hidden): evaluate, and top-1 of 1,000 test images through
#      `cnnlab serve` against the GPU's own predictions
#   3. cifar-cnn killed with SIGKILL mid-epoch and resumed, in deterministic mode: weights against an
#      uninterrupted run's, bit for bit
#   4. bench/speed.py --device cuda: images/s per preset, fp32 and the default precision
#   5. cifar-fast to 0.93 on the JPEG copy (bench/time_to_accuracy.py), then airbench94 (3 runs) on the same
#      GPU and the same JPEG copy, its data given as the train.pt/test.pt it would otherwise download
# Everything is printed, and kept in $OUT/gpu_check.log when $OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
    data="${CNNLAB_DATA:-../shared/data}"
    mkdir -p .gpu/data .gpu/whl
    cp -r "$data/mnist" .gpu/data/
    cp "$data/cifar10-jpeg.tar.gz" .gpu/data/
    python3 -m pip download -q --no-deps --only-binary=:all: -d .gpu/whl "tomli-w>=1.0"
    if [[ -n "${2:-}" ]]; then
        git -C "$2" show HEAD:airbench94_muon.py > .gpu/airbench94_muon.py
    fi
    du -sh .gpu
    exit 0
fi

PY="${PY:-python3}"
dry=""
small=()  # extra training arguments: none on the GPU
if [[ "${1:-}" == "--dry-run" ]]; then
    dry=1
    small=(--epochs 1 --set train_subset=3000 --set test_subset=1000)
fi
log="${OUT:-/tmp}/gpu_check.log"
exec > >(tee "$log") 2>&1
data="${GPU_CHECK_DATA:-$PWD/.gpu/data}"  # the data --prepare copied; a dry run may name ../shared/data
export PYTHONUNBUFFERED=1 CNNLAB_DATA="$data" CNNLAB_CACHE="${CNNLAB_CACHE:-/tmp/cnnlab-cache}"
runs=/tmp/gpu-runs
rm -rf "$runs"
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

step "machine"
if [[ -z "$dry" ]]; then
    nvidia-smi -L || true
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
    export PYTHONPATH=/tmp/site
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
        || { echo "pip install -e . failed: running from the checkout"; export PYTHONPATH="$PWD:/tmp/site"; }
else
    echo "dry run on the CPU with $PY"
fi

step "1. mnist-cnn, 5 epochs on the GPU"
start=$(date +%s.%N)
"$PY" -m cnnlab train mnist-cnn --runs "$runs" ${small[@]+"${small[@]}"}
"$PY" - "$runs/mnist-cnn" "$start" "$dry" <<'EOF'
import json, sys, time
r = json.load(open(f"{sys.argv[1]}/results.json"))
acc = r["test"]["accuracy"]
verdict = "dry run: 1 epoch on a subset" if sys.argv[3] else f"{'PASS' if acc >= 0.985 else 'FAIL'} (>= 0.985)"
print(f"mnist-cnn on {r['device']} in {r['precision']}: test accuracy {acc:.4f}, {time.time() - float(sys.argv[2]):.1f} s "
      f"wall with start-up; {verdict}")
EOF

step "2. the GPU-trained run on the CPU: evaluate, and serve against the GPU's top-1"
CUDA_VISIBLE_DEVICES= "$PY" -m cnnlab evaluate "$runs/mnist-cnn" | sed -n 1p
"$PY" - "$runs/mnist-cnn" <<'EOF'
import http.client, io, json, os, subprocess, sys
import torch
from PIL import Image
import cnnlab
from cnnlab.data import datasets
from cnnlab.models import inference
run = sys.argv[1]
test = datasets.load("mnist").test
x = test.x[:1000]
model = cnnlab.load_model(run)
device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a dry run
gpu = inference.probabilities(model.module.to(device), x.to(device)).argmax(1).cpu()
env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
server = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", run, "--port", "0", "--quiet"],
                          stdout=subprocess.PIPE, text=True, env=env)
port = int(server.stdout.readline().split("http://", 1)[1].split("/")[0].rsplit(":", 1)[1])
conn, same = http.client.HTTPConnection("127.0.0.1", port, timeout=60), 0
for i in range(1000):
    out = io.BytesIO()
    Image.fromarray(x[i, 0].numpy()).save(out, "PNG")
    conn.request("POST", "/predict?k=1", out.getvalue())
    top = json.loads(conn.getresponse().read())["top"][0]["class"]
    same += top == model.classes[gpu[i]]
server.terminate()
print(f"serve on the CPU agrees with the GPU's top-1 on {same} of 1000 test images; "
      f"{'PASS' if same == 1000 else 'FAIL'}")
EOF

step "3. cifar-cnn killed mid-epoch and resumed, deterministic"
det=(train cifar-cnn --runs "$runs" --epochs 2 --set train_subset=20000 --set test_subset=2000
     --set deterministic=true --set autosave_seconds=1 ${small[@]+"${small[@]}"})
"$PY" -m cnnlab "${det[@]}" --name det-whole > /dev/null
"$PY" -m cnnlab "${det[@]}" --name det-killed > /dev/null &
pid=$!
until [[ -f "$runs/det-killed/last.pt" ]]; do sleep 0.2; done  # the first mid-epoch resume point
sleep 1.5
kill -9 $pid || true
wait $pid || true
"$PY" -m cnnlab "${det[@]}" --name det-killed | tail -2
"$PY" - "$runs" <<'EOF'
import sys, torch
from cnnlab.core import checkpoints
a, b = (checkpoints.load(f"{sys.argv[1]}/{n}/last.pt")["model"] for n in ("det-whole", "det-killed"))
same = all(torch.equal(a[k], b[k]) for k in a)
print(f"resumed after SIGKILL: weights {'equal, bit for bit' if same else 'DIFFERENT'}; {'PASS' if same else 'FAIL'}")
EOF

step "4. bench/speed.py on the GPU"
if [[ -z "$dry" ]]; then
    "$PY" bench/speed.py --device cuda --steps 100 --repeats 3
else
    "$PY" bench/speed.py --no-keras --presets mlp --steps 3 --repeats 1
fi

step "5a. cifar-fast to 0.93 on the CIFAR-10 JPEG copy"
if [[ -z "$dry" ]]; then
    "$PY" bench/time_to_accuracy.py cifar-fast --target 0.93 --data "$data/cifar10-jpeg.tar.gz"
else
    "$PY" bench/time_to_accuracy.py cifar-fast --target 0.2 --data "$data/cifar10-jpeg.tar.gz" \
        --set train_subset=2000 --set test_subset=500 --set epochs=1 --set warmup_epochs=0.5
fi

step "5b. airbench94 (its own script, 3 runs) on the same GPU and the same JPEG copy"
if [[ -f .gpu/airbench94_muon.py ]]; then
    rm -rf /tmp/airbench && mkdir -p /tmp/airbench/cifar10
    "$PY" - /tmp/airbench/cifar10 "$data/cifar10-jpeg.tar.gz" <<'EOF'
import sys, torch
from cnnlab.data import datasets
ds = datasets.load(data=sys.argv[2])  # the CIFAR-10 JPEG copy, in airbench's own layout
for name, split in (("train", ds.train), ("test", ds.test)):
    # in a seeded random order, as the genuine files are: the copy's folders are sorted by class, and airbench
    # whitens its first layer with the first 5,000 training images
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    torch.save({"images": split.x[order].permute(0, 2, 3, 1).contiguous(), "labels": split.y[order],
                "classes": ds.classes}, f"{sys.argv[1]}/{name}.pt")
print(f"airbench data: {len(ds.train)} train / {len(ds.test)} test images of the CIFAR-10 JPEG copy")
EOF
    # 3 runs instead of 200, and torch.compile's default mode instead of max-autotune, whose search alone can
    # take minutes: the only two changes to its script
    sed -e 's/for run in range(200)/for run in range(3)/' -e 's/model.compile(mode="max-autotune")/model.compile()/' \
        .gpu/airbench94_muon.py > /tmp/airbench/airbench94.py
    echo "airbench94.py: $(grep -c 'range(3)\|model.compile()' /tmp/airbench/airbench94.py) lines changed"
    if [[ -z "$dry" ]]; then
        (cd /tmp/airbench && "$PY" airbench94.py)
    else
        "$PY" -c "import torch; d = torch.load('/tmp/airbench/cifar10/test.pt'); print('airbench test.pt:', d['images'].shape, d['images'].dtype, d['labels'][:5].tolist(), d['classes'][:3])"
    fi
else
    echo "no .gpu/airbench94_muon.py: run --prepare with a cifar10-airbench checkout"
fi
step "done"
