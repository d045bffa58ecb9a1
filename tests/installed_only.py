"""Only the installed agent: importing one of vigil's packages from anywhere else fails.

tests/wheel_suite.sh copies this file into the test environment's site-packages with a .pth
line that imports it, so that it runs in every Python of that environment: pytest, and each
agent and helper the tests start. The suite already runs from a copy of the tree without the
packages; this turns any way back to a checkout (PYTHONPATH, a subprocess started in one, a
sys.path entry) into a loud ImportError instead of a suite that tests the wrong code.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec

PACKAGES = frozenset({"agent", "collectors", "checks", "exporters"})
SITE = os.path.realpath(sysconfig.get_path("purelib"))


class InstalledOnly(MetaPathFinder):
    """Asks the other finders where a package would come from, and refuses anywhere but SITE."""

    def find_spec(self, name: str, path=None, target=None) -> ModuleSpec | None:
        if name not in PACKAGES:  # their modules are found through the package's own __path__
            return None
        spec = next((found for finder in sys.meta_path if finder is not self and hasattr(finder, "find_spec")
                     if (found := finder.find_spec(name, path, target)) is not None), None)
        if spec is not None and not os.path.realpath(spec.origin or "").startswith(SITE + os.sep):
            raise ImportError(f"vigil's `{name}` package would be imported from {spec.origin or 'a bare directory'}, "
                              f"not from the installed wheel in {SITE}: the suite tests the installed agent only")
        return spec


sys.meta_path.insert(0, InstalledOnly())
