"""YAML loading that remembers where every key came from, for errors that name a line.

A config is small and written by hand, so whatever is not is refused with a line
rather than allowed to hang or exhaust the agent (a reload runs on its event loop):
the file size is bounded, aliases may be expanded only so far (a "billion laughs"
file is a few hundred bytes) and never into themselves, values nest only so deep
(before Python's recursion limit, in the text or through aliases), control characters are
refused, and a value that merely looks like a date (`2024-13-01`) is an error at
its line, not a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Location = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024  # a config with thousands of targets is well under this
MAX_NODES = 200_000  # values after alias expansion; 1 MiB of plain YAML has fewer
MAX_DEPTH = 32  # levels of nesting, in the text or through aliases; a config needs a few (parsing recurses)
TOO_DEEP = f"more than {MAX_DEPTH} levels deep (a config needs a few)"


class YamlError(Exception):
    """A file that is not readable or not valid YAML; `line` is 1-based or None."""

    def __init__(self, file: str, line: int | None, message: str):
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")
        self.file, self.line, self.message = file, line, message


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str):
        self._depth = 0  # the collections around the node being composed
        super().__init__(stream)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self._depth > MAX_DEPTH:  # before Python's recursion limit: an error with a line
            raise yaml.composer.ComposerError(None, None, f"values nested {TOO_DEEP}; is this the config?",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"`{node.value}` reads as a date but is not one ({exc}); quote it if it is text",
                node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


def load(path: Path) -> tuple[Any, dict[Location, int]]:
    """The document and a map from each key path (`("targets", 0, "name")`) to its line."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YamlError(str(path), None, f"cannot read the file: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise YamlError(str(path), None, f"the file is larger than {MAX_BYTES // 1024} KiB; is it the config?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise YamlError(str(path), line, "the file is not UTF-8 text") from None
    return parse(text, str(path))


def parse(text: str, file: str) -> tuple[Any, dict[Location, int]]:
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # checked for the whole text on creation
        line = text.count("\n", 0, exc.position) + 1
        raise YamlError(file, line, f"the character U+{exc.character:04X} is not allowed in YAML "
                                    "(a NUL byte or another control character)") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, {}
        lines: dict[Location, int] = {(): node.start_mark.line + 1}
        _Index(lines, file).walk(node, ())
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as exc:
        raise YamlError(file, *_explained(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlError(file, None, str(exc)) from None
    finally:
        loader.dispose()


def _explained(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line and a sentence for a YAML syntax error, with the hint a person needs."""
    mark = exc.problem_mark or exc.context_mark
    message = " ".join(filter(None, (exc.context, exc.problem)))
    if "'\\t'" in message:  # PyYAML shows the tab as an escape
        message = "a tab character: YAML indents with spaces only (replace the tab with spaces)"
    elif exc.context == "while scanning a quoted scalar" and exc.context_mark is not None:
        mark = exc.context_mark  # where the quote opens, not the end of the file where it was missed
        message = "this quoted value is never closed (a missing quote)"
    return (mark.line + 1 if mark else None), message


class _Index:
    """Records each key path's line, counting values as aliases expand them."""

    def __init__(self, lines: dict[Location, int], file: str):
        self.lines, self.file = lines, file
        self.count = 0
        self.open: set[int] = set()  # the nodes being walked: meeting one again is an alias into itself

    def walk(self, node: yaml.Node, path: Location) -> None:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlError(self.file, node.start_mark.line + 1,
                            f"aliases expand to more than {MAX_NODES} values; write the values out")
        if len(path) > MAX_DEPTH:  # deeper in the text is the composer's error: here aliases nest
            raise YamlError(self.file, node.start_mark.line + 1,
                            f"aliases nest these values {TOO_DEEP}; write them out")
        if id(node) in self.open:
            raise YamlError(self.file, node.start_mark.line + 1,
                            "a recursive alias: this anchor's value contains an alias to itself")
        if isinstance(node, yaml.MappingNode):
            self.open.add(id(node))
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    raise YamlError(self.file, key_node.start_mark.line + 1, f"duplicate key `{key}`")
                seen.add(key)
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                self.walk(value_node, path + (key,))
            self.open.discard(id(node))
        elif isinstance(node, yaml.SequenceNode):
            self.open.add(id(node))
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = item.start_mark.line + 1
                self.walk(item, path + (index,))
            self.open.discard(id(node))
