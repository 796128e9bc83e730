"""Imports lmms-eval 0.2.1's task modules without its heavy package __init__ (which pulls in torch,
transformers, datasets, ... that the parsing and metric functions never use).

`lmms_eval/__init__.py` and `lmms_eval/tasks/__init__.py` are replaced by empty packages that point
at the installed directories, and the few third-party modules the task utils import only for
their data loading (decord, cv2, datasets, ...) are stubbed. Every function the fixtures call is
lmms-eval's own code, unmodified. Run with the venv made by setup_venv.sh.
"""

import importlib
import importlib.util
import sys
import types
from pathlib import Path




def _pkg_dir():
    spec = importlib.util.find_spec("lmms_eval")
    return Path(spec.submodule_search_locations[0])


def _stub(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _install():
    if getattr(_install, "done", False):
        return
    root = _pkg_dir()
    for pkg, path in [
        ("lmms_eval", root),
        ("lmms_eval.tasks", root / "tasks"),
        ("lmms_eval.api", root / "api"),
    ]:
        m = types.ModuleType(pkg)
        m.__path__ = [str(path)]
        sys.modules[pkg] = m

    # lmms_eval.api.filter imports datasets.Dataset (only as a type) and lmms_eval.api.instance.
    _stub("datasets", Dataset=object)
    # Video decoding libraries, used only by doc_to_visual.
    _stub("decord", VideoReader=None, cpu=None)
    _stub("cv2")

    class _Logger:
        def __getattr__(self, _):
            return lambda *a, **k: None

    # Keep loguru real if present; otherwise silence.
    try:
        import loguru  # noqa: F401
    except ImportError:
        _stub("loguru", logger=_Logger())
    # nextqa / egoschema read HF_HOME at import to find their cached videos.
    import os
    os.environ.setdefault("HF_HOME", "/nonexistent-hf-home")
    _install.done = True


def task_module(name):
    """`task_module("ai2d.utils")` -> lmms_eval.tasks.ai2d.utils"""
    _install()
    return importlib.import_module(f"lmms_eval.tasks.{name}")


def module(name):
    """`module("filters.extraction")` -> lmms_eval.filters.extraction"""
    _install()
    return importlib.import_module(f"lmms_eval.{name}")


def lmms_eval_dir():
    return _pkg_dir()
