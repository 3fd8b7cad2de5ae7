"""The README starts with the two set-up commands, and CI runs the second exactly as a user types it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    first_block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1).splitlines()
    assert len(first_block) == 2 and first_block[0].endswith("cnnlab train mnist-cnn")
    assert first_block[1] in (ROOT / ".ci" / "run").read_text().splitlines()
    assert all("torch==2.13.0" in line for line in first_block)  # a fresh machine takes the local CPU build


def test_torch_is_a_range_not_a_pin():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.11,<3"' in pyproject and "torch==" not in pyproject
