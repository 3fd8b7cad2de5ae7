"""The package's layers import one way: a layer imports only itself and the layers below it, and serving and
reports never import training. Function-level imports count too."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnlab"
BELOW = {  # layer -> the layers it may import (besides itself)
    "core": set(),
    "data": {"core"},
    "models": {"core", "data"},
    "training": {"core", "data", "models"},
    "reports": {"core", "data", "models"},
    "serving": {"core", "data", "models"},
    "experiments": {"core", "data", "models", "training", "reports"},
    "api": {"core", "data", "models", "training", "reports", "serving", "experiments"},
    "top": {"api", "core", "data", "models", "training", "reports", "serving", "experiments", "top"},
}


def layer_of(module: str) -> str:
    """cnnlab.data.formats -> data; cnnlab, cnnlab.cli, cnnlab.callbacks (the public shells) -> top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in BELOW else "top"


def imported(source: str, module: str) -> set:
    """The cnnlab modules a file's source imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "cnnlab"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "cnnlab":
            found |= {f"{node.module}.{a.name}" if node.module == "cnnlab" else node.module for a in node.names}
    return found


def violations(source: str, module: str) -> list:
    mine = layer_of(module)
    return [f"{module} ({mine}) imports {m} ({layer_of(m)})" for m in sorted(imported(source, module))
            if layer_of(m) != mine and layer_of(m) not in BELOW[mine]]


def test_no_layer_imports_a_higher_one():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("cnnlab",) + path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        bad += violations(path.read_text(), module)
    assert not bad, "\n".join(bad)


def test_the_check_catches_an_upward_import():
    assert violations("def f():\n    from cnnlab.training import trainer\n", "cnnlab.serving.predict") == [
        "cnnlab.serving.predict (serving) imports cnnlab.training (training)"]
    assert violations("from cnnlab import CnnlabError\n", "cnnlab.core.config") == [
        "cnnlab.core.config (core) imports cnnlab.CnnlabError (top)"]
    assert violations("from cnnlab.core import config\n", "cnnlab.data.formats") == []
