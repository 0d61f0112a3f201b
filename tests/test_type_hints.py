"""Every public function and method of pyro_lvm has type hints on its parameters and its return.

Public means: a function or class named in a module's ``__all__`` (modules whose name has a part
starting with ``_`` are private; what they export is checked where a public module re-exports it),
and a class's own methods and properties whose names do not start with ``_``, plus ``__init__``
(the constructor's parameters; its return is ``None`` by definition, so it may stay unannotated).
``self`` and ``cls`` need no annotation; ``*args`` and ``**kwargs`` do (``Any`` says "anything").
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Callable, Iterator

import pyro_lvm

OPTIONAL = {"pyro_lvm.lightning": "lightning"}  # module -> the optional extra it imports


def public_modules() -> Iterator[str]:
    """``pyro_lvm`` and every submodule without a private (``_``) part in its name (those of an
    optional extra only where the extra is installed)."""
    yield "pyro_lvm"
    for info in pkgutil.walk_packages(pyro_lvm.__path__, "pyro_lvm."):
        extra = OPTIONAL.get(info.name)
        if not any(part.startswith("_") for part in info.name.split(".")) and (extra is None or importlib.util.find_spec(extra)):
            yield info.name


def class_members(cls: type) -> Iterator[tuple[str, Callable]]:
    """The functions a class defines itself (not inherited): public methods, properties, ``__init__``."""
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            value = value.fget
        if inspect.isfunction(value):
            yield name, value


def public_functions() -> dict[str, Callable]:
    """Qualified name -> function, for every public function and method defined in pyro_lvm."""
    found: dict[str, Callable] = {}
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not getattr(obj, "__module__", "").startswith("pyro_lvm"):
                continue  # constants, and names re-exported from Pyro or torch
            if inspect.isclass(obj):
                for attr, fn in class_members(obj):
                    found.setdefault(f"{obj.__module__}.{obj.__qualname__}.{attr}", fn)
            elif inspect.isfunction(inspect.unwrap(obj)):
                found.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return found


def missing_hints(fn: Callable, is_init: bool = False) -> list[str]:
    """The parameters (and ``return``) of ``fn`` without an annotation."""
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if signature.return_annotation is inspect.Signature.empty and not is_init:
        missing.append("return")
    return missing


def test_the_walk_finds_the_public_api():
    found = public_functions()
    for name in [
        "pyro_lvm.ops.ctc.ctc_log_likelihood",
        "pyro_lvm.ops.hmm.hmm_viterbi",
        "pyro_lvm.distributions.ctc.CTC.log_prob",
        "pyro_lvm.infer.train.train",
        "pyro_lvm.infer.train.History.plot",
        "pyro_lvm.guides.amortized.AmortizedNormal.__init__",
    ]:
        assert name in found


def test_missing_hints_names_parameters_and_return():
    def bare(self, x, *args, y: int = 1, **kwargs):
        pass

    def typed(x: int, *args: object, **kwargs: object) -> None:
        pass

    assert missing_hints(bare) == ["x", "args", "kwargs", "return"]
    assert missing_hints(bare, is_init=True) == ["x", "args", "kwargs"]
    assert missing_hints(typed) == []


def test_every_public_function_has_type_hints():
    unannotated = {
        name: missing
        for name, fn in sorted(public_functions().items())
        if (missing := missing_hints(fn, is_init=name.endswith(".__init__")))
    }
    listing = "\n".join(f"  {name}: {', '.join(missing)}" for name, missing in unannotated.items())
    assert not unannotated, f"{len(unannotated)} public functions lack type hints (parameter names, or 'return'):\n{listing}"
