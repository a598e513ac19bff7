"""The public surface: ``__all__`` names everything public and everything in it imports."""

from __future__ import annotations

import ast
import inspect
import types
from pathlib import Path

import pydantic

import pooldrop.client as sdk
from pooldrop.client import _errors, _models


def test_all_is_importable_sorted_and_unique() -> None:
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None, name
    assert sdk.__all__ == sorted(sdk.__all__)
    assert len(set(sdk.__all__)) == len(sdk.__all__)


def test_every_public_name_is_in_all() -> None:
    # As httpx checks its own: no public name in the package namespace escapes __all__.
    public = {
        n
        for n, v in vars(sdk).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"
    }
    assert public == set(sdk.__all__)


def test_every_error_and_model_is_exported() -> None:
    errors = {
        n
        for n, v in vars(_errors).items()
        if inspect.isclass(v) and issubclass(v, _errors.PooldropError)
    }
    models = {
        n
        for n, v in vars(_models).items()
        if inspect.isclass(v)
        and issubclass(v, pydantic.BaseModel)
        and v.__module__ == _models.__name__
    }
    assert errors - set(sdk.__all__) == set()
    assert models - {"Model"} - set(sdk.__all__) == set()


def test_sdk_imports_nothing_of_the_server() -> None:
    for path in Path(sdk.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                assert (
                    name == "pooldrop.client"
                    or not name.startswith("pooldrop")
                    or (name.startswith("pooldrop.client."))
                ), f"{path.name} imports {name}"
