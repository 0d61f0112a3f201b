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
