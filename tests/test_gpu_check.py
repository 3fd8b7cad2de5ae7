"""scripts/gpu_check.sh, the GPU checks, must run as it is when a GPU machine is lent: its dry run takes every
step on this CPU at tiny sizes (airbench's own run aside) and must pass each check it can."""

import os
import subprocess
import sys

from conftest import ROOT


def test_the_gpu_check_script_runs_through_on_the_cpu(real_data, tmp_path):
    env = {**os.environ, "PY": sys.executable, "GPU_CHECK_DATA": str(real_data), "OUT": str(tmp_path)}
    r = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    for check in ("1. mnist-cnn", "2. the GPU-trained run on the CPU", "3. cifar-cnn killed", "4. bench/speed.py",
                  "5a. cifar-fast", "5b. airbench94", "=== done"):
        assert check in out, out[-3000:]
    assert "serve on the CPU agrees with the GPU's top-1 on 1000 of 1000 test images; PASS" in out
    assert "resumed after SIGKILL: weights equal, bit for bit; PASS" in out
    assert "FAIL" not in out and "Traceback" not in out, out[-3000:]
    assert (tmp_path / "gpu_check.log").read_text().strip().endswith(out.strip().splitlines()[-1])
