"""Sphinx configuration of the pyro_lvm API reference (built with warnings as errors in .ci/run)."""

import pyro_lvm

project = "pyro_lvm"
version = release = pyro_lvm.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_use_rtype = False
# no intersphinx: CI has no network at build time, so references to Pyro and torch stay plain text
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]


def _resolve_reexport(app, env, node, contnode):
    """Link ``pyro_lvm.<package>.<name>`` (a name a package re-exports, the way users import it)
    to the module that defines the name, where the reference documents it."""
    import importlib

    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("pyro_lvm."):
        return None
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        break
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(obj, type) and not callable(obj):  # data: the module (not a package) whose __all__ holds it
        import sys

        module, qualname = next(
            ((m.__name__, parts[-1]) for m in list(sys.modules.values())
             if m.__name__.startswith("pyro_lvm.") and not hasattr(m, "__path__")
             and parts[-1] in getattr(m, "__all__", ()) and getattr(m, parts[-1], None) is obj),
            (None, None),
        )
    if not (module and qualname) or f"{module}.{qualname}" == target:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], f"{module}.{qualname}", node, contnode)


def setup(app):
    app.connect("missing-reference", _resolve_reexport)
