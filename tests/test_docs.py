"""The API reference (docs/api.rst) has one ``automodule`` for every public module of pyro_lvm.

Sphinx itself builds the reference in ``.ci/run`` (``pip install -e ".[docs]"``, warnings as errors);
this test only keeps the page in step with the package, so a new module cannot go undocumented.
"""

import pkgutil
import re
from pathlib import Path

import pyro_lvm

API = Path(__file__).resolve().parents[1] / "docs" / "api.rst"


def public_modules() -> set[str]:
    names = {"pyro_lvm"} | {m.name for m in pkgutil.walk_packages(pyro_lvm.__path__, "pyro_lvm.")}
    return {n for n in names if not any(part.startswith("_") for part in n.split("."))}


def test_api_reference_covers_every_public_module():
    documented = re.findall(r"^\.\. automodule:: (\S+)$", API.read_text(), flags=re.MULTILINE)
    assert len(documented) == len(set(documented)), "a module is documented twice"
    assert not public_modules() - set(documented), f"add to docs/api.rst: {sorted(public_modules() - set(documented))}"
    assert not set(documented) - public_modules(), f"no such module: {sorted(set(documented) - public_modules())}"
