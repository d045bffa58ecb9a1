"""Which module implements each `kind:`; imported only when a config uses it.

A config without VMware never imports pyvmomi: the map holds dotted paths, not classes.
"""

from __future__ import annotations

import importlib
from functools import cache

COLLECTORS: dict[str, str] = {
    "host": "collectors.host:HostCollector",
}


@cache
def collector_class(kind: str) -> type:
    module_name, _, class_name = COLLECTORS[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
