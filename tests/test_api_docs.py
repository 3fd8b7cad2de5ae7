"""docs/api.md is executed: its Python blocks run in order, in one namespace, as a reader would paste them, on
real MNIST. Every public name is documented there."""

import os
import re
from pathlib import Path

import cnnlab

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def blocks() -> list:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_every_public_name_is_documented():
    text = DOC.read_text()
    documented = set(re.findall(r"^## (?:cnnlab\.)?(\w+)", text, re.M))
    public = {n for n in cnnlab.__all__ if not n.startswith("_")} - {"Data", "Model", "Predictions", "Report", "Table"}
    assert public <= documented, f"not in docs/api.md: {sorted(public - documented)}"
    for name in ("Data", "Model", "Predictions", "Report", "Table"):  # the types the functions return, named in their text
        assert f"`{name}`" in text or f"{name}(" in text or f"## {name}" in text or name.lower() in text


def test_the_examples_run(real_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLAB_DATA", str(real_data))
    namespace = {}
    for i, code in enumerate(blocks()):
        try:
            exec(compile(code, f"docs/api.md block {i + 1}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"docs/api.md block {i + 1} failed: {type(e).__name__}: {e}\n{code}") from e
    out = capsys.readouterr().out
    assert "Total params: 538,698" in out and "optimizer.lr must be > 0" in out
    assert (tmp_path / "curves.png").stat().st_size > 10_000 and (tmp_path / "runs" / "registry.sqlite").is_file()
    assert sorted(os.listdir(tmp_path / "runs")) == ["api-arrays", "api-callback", "api-demo", "registry.sqlite"]
