"""The package as users see it: one version, the public API, stubs true to the built core module."""

import ast
import importlib.metadata
from pathlib import Path

import pytest

import hyperchroma as hc
from hyperchroma import _core


def test_version_is_the_distributions():
    try:
        dist = importlib.metadata.version("hyperchroma")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("hyperchroma is not installed as a distribution (running from the source tree)")
    assert hc.__version__ == dist


def test_public_api_exists():
    for name in hc.__all__:
        assert hasattr(hc, name), name


def _stub_names(tree):
    top, classes = set(), {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            top.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id.isupper() \
                and node.target.id.startswith("STATUS"):
            top.add(node.target.id)
        elif isinstance(node, ast.ClassDef):
            classes[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)} | {
                n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    return top, classes


def test_core_stub_matches_the_built_module():
    tree = ast.parse((Path(hc.__file__).parent / "_core.pyi").read_text())
    top, classes = _stub_names(tree)
    public = {n for n in dir(_core) if not n.startswith("_")}
    module_funcs = {n for n in public if not isinstance(getattr(_core, n), type) and callable(getattr(_core, n))}
    module_classes = {n for n in public if isinstance(getattr(_core, n), type)}
    assert module_funcs == {n for n in top if not n.startswith("STATUS")}, "functions in _core.pyi vs _core"
    assert {n for n in public if n.startswith("STATUS")} == {n for n in top if n.startswith("STATUS")}
    assert module_classes == set(classes), "classes in _core.pyi vs _core"
    for cls, members in classes.items():
        real = {n for n in dir(getattr(_core, cls)) if not n.startswith("_")}
        stub = {n for n in members if not n.startswith("_")}
        assert real == stub, f"{cls}: stub {sorted(stub ^ real)} differ"
