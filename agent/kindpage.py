"""Each kind's page (collectors/<family>/README.md): the parts made from the code, kept between markers.

People write a kind's page (what it collects, the least-privileged account to create on the
device or tenant, how it reads them); the blocks that restate the code are made here, so they
cannot drift from it: a sample config from the kind's Config model, its metric families, its
alerts. `make docs` rewrites them in place (`python -m agent.kindpage [module:Class ...]`);
tests/test_docs.py fails while one is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from agent import registry
from agent.catalogue import table
from agent.configdoc import as_written, nested_models, type_of
from agent.schema import TargetConfig

BLOCKS = ("config", "metrics", "alerts")
COMMENT_AT = 48  # the keys' descriptions line up after the longest key and value up to this long


def begin(block: str) -> str:
    return f"<!-- {block}: made by `make docs` from the code; do not edit by hand -->"


def end(block: str) -> str:
    return f"<!-- end of {block} -->"


def page_of(collector: type) -> Path:
    """The kind page: README.md in its collector's folder, where the package is installed."""
    return Path(sys.modules[collector.__module__].__file__).parent / "README.md"


def blocks(collector: type) -> dict[str, str]:
    """What each block of a kind's page says now; on a page several kinds share, each block is named for its
    kind (`http config`)."""
    made = {"config": f"```yaml\n{sample(collector.Config)}```\n", "metrics": table(collector.METRICS),
            "alerts": alerts(collector.CONDITIONS)}
    if len(kinds_sharing(collector)) <= 1 and not collector.SHARED_PAGE:  # <= 1: the tests' skeleton is unregistered
        return made
    kind = collector.Config.model_fields["kind"].annotation.__args__[0]
    return {f"{kind} {block}": body for block, body in made.items()}


def kinds_sharing(collector: type) -> list[str]:
    """The kinds whose collectors live in this collector's folder (the probes: http, tcp, ...)."""
    folder = collector.__module__.rpartition(".")[0]
    return [kind for kind, path in registry.COLLECTORS.items() if path.partition(":")[0].rpartition(".")[0] == folder]


def rewrite(text: str, made: dict[str, str]) -> str:
    """The page with each block between its markers replaced; ValueError for a page without one."""
    for block, body in made.items():
        head, found, rest = text.partition(begin(block) + "\n")
        _, closed, tail = rest.partition(end(block))
        if not (found and closed):
            raise ValueError(f"the page has no {block} block: add the lines `{begin(block)}` and `{end(block)}`")
        text = f"{head}{begin(block)}\n{body}{end(block)}{tail}"
    return text


def sample(config: type[BaseModel]) -> str:
    """A target of the kind in YAML: its required keys with a placeholder, the others commented out with their
    default, each with its meaning."""
    kind = config.model_fields["kind"].annotation.__args__[0]
    common = TargetConfig.model_fields
    lines = [("targets:", ""), (f"  - name: {_value(common['name'])}", f"required: {common['name'].description}"),
             (f"    kind: {kind}", "")]
    lines += _keys(config, "    ", commented=False, skip=common)
    lines += _keys(TargetConfig, "    ", commented=False, skip=("name", "kind"))
    column = max(len(code) for code, _ in lines if len(code) <= COMMENT_AT) + 2  # a longer key's value runs past
    return "".join(code + (f"{' ' * max(2, column - len(code))}# {meaning}" if meaning else "") + "\n"
                   for code, meaning in lines)


def _keys(model: type[BaseModel], indent: str, commented: bool, skip=()) -> list[tuple[str, str]]:
    lines = []
    for name, info in model.model_fields.items():
        if name in skip or name == "kind":
            continue
        optional = commented or not info.is_required()
        prefix = indent + ("# " if optional else "")
        meaning = ("required: " if not optional else "") + (info.description or "")
        members = nested_models(info.annotation)
        if not members:
            lines.append((f"{prefix}{name}: {_value(info)}", meaning))
            continue
        lines.append((f"{prefix}{name}:", meaning))
        for index, member in enumerate(members):  # a union's members (snmp: v2c or v3) one after the other
            if index:
                lines.append((f"{indent}  # or:", ""))
            lines += _keys(member, indent + "  ", commented=optional or index > 0)
    return lines


def _value(info: FieldInfo) -> str:
    """The default as written in the config, or a placeholder naming what is expected."""
    choices = get_args(info.annotation) if get_origin(info.annotation) is Literal else ()
    if len(choices) == 1:  # a union's tag (snmp's version)
        return str(choices[0])
    if info.is_required() or info.default is None or info.default_factory is not None:
        return "${cred:NAME}" if type_of(info).startswith("secret") else f"<{type_of(info).replace('`', '')}>"
    value = as_written(info, info.default)
    if isinstance(value, tuple):
        value = list(value)
    elif not isinstance(value, (str, int, float, list)):
        value = str(value)  # a URL, a path
    return yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]


def alerts(conditions: tuple) -> str:
    """The kind's shipped alert rules, as the status page and `vigil once` judge them."""
    rows = ["| alert | severity | expression | the status page's words |", "|---|---|---|---|"]
    for condition in conditions:
        expr = condition.expr.replace("|", "\\|")
        rows.append(f"| {condition.alert} | {condition.severity} | `{expr}` | {condition.says} |")
    return "\n".join(rows) + "\n"


def stale(collectors: list[type] | None = None) -> list[Path]:
    """The pages (of every registered kind, or of `collectors`) whose blocks no longer say what the code does."""
    if collectors is None:
        collectors = [registry.collector_class(kind) for kind in sorted(registry.COLLECTORS)]
    return [page_of(collector) for collector in collectors if _rewritten(collector) is not None]


def _rewritten(collector: type) -> str | None:
    """The collector's page with its blocks made anew, or None when they are current."""
    text = page_of(collector).read_text(encoding="utf-8")
    made = rewrite(text, blocks(collector))
    return made if made != text else None


def main(paths: list[str]) -> None:
    """Rewrite the blocks of every kind's page, and of the collectors at `paths` (`module:Class`: the tests'
    skeleton kind)."""
    for collector in [registry.collector_class(kind) for kind in sorted(registry.COLLECTORS)] + [
            registry.load(path) for path in paths]:
        if (made := _rewritten(collector)) is not None:
            page_of(collector).write_text(made, encoding="utf-8")
            print(f"wrote {page_of(collector)}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
