"""YAML loading that remembers where every key came from, for errors that name a line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Location = tuple[str | int, ...]


class YamlError(Exception):
    """A file that is not readable or not valid YAML; `line` is 1-based or None."""

    def __init__(self, file: str, line: int | None, message: str):
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")
        self.file, self.line, self.message = file, line, message


def load(path: Path) -> tuple[Any, dict[Location, int]]:
    """The document and a map from each key path (`("targets", 0, "name")`) to its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlError(str(path), None, f"cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise YamlError(str(path), None, "the file is not UTF-8 text") from None
    return parse(text, str(path))


def parse(text: str, file: str) -> tuple[Any, dict[Location, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, {}
        lines: dict[Location, int] = {(): node.start_mark.line + 1}
        _index(node, (), lines, file)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(filter(None, (exc.context, exc.problem)))
        raise YamlError(file, mark.line + 1 if mark else None, message) from None
    except yaml.YAMLError as exc:
        raise YamlError(file, None, str(exc)) from None
    finally:
        loader.dispose()


def _index(node: yaml.Node, path: Location, lines: dict[Location, int], file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise YamlError(file, key_node.start_mark.line + 1, f"duplicate key `{key}`")
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _index(value_node, path + (key,), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _index(item, path + (index,), lines, file)
