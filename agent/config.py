"""The agent's configuration: one YAML file, validated into frozen pydantic models.

Targets (and backup locations) are validated in two steps: their `kind` picks the
collector's own `Config` model from the registry (see agent.schema).
Every error is reported as `file:line: field.path: message`, never with the value
(which could be a secret).
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

from pydantic import BaseModel, Field, PlainValidator, ValidationError, model_validator

from agent import ondisk, redact, registry, yamlfile
from agent.schema import Dispatched, Duration, Lazy, StrictModel, TargetConfig, dispatched, entry_of
from agent.secrets import file_warnings, secret_fields

if TYPE_CHECKING:
    from agent.section import Section

DEFAULT_PATH = Path("/etc/vigil/vigil.yaml")
EMBEDDED = "(embedded default)"


def check_listen(value: object) -> str:
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        if sep and host and port.isdigit() and 0 < int(port) < 65536:
            return value
    raise ValueError("expected host:port, such as 127.0.0.1:9839 or [::1]:9839")


ListenAddress = Annotated[str, PlainValidator(check_listen)]


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


SYSTEM_STATE = Path("/var/lib/vigil")  # the service's (deploy/install.sh, StateDirectory=vigil)


def default_state_dir() -> Path:
    """systemd's StateDirectory=, else /var/lib/vigil for root and for a user who may write there (the vigil
    account: `sudo -u vigil vigil drill JOB` records where the service reads), else the XDG state home."""
    if directory := os.environ.get("STATE_DIRECTORY"):
        return Path(directory.split(":")[0])
    if os.geteuid() == 0 or os.access(SYSTEM_STATE, os.W_OK):
        return SYSTEM_STATE
    xdg = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(xdg) / "vigil"


Target = dispatched(TargetConfig, "target")


class Defaults(StrictModel):
    """What every target gets unless it sets its own."""

    interval: Duration = Field(60.0, description="how often each target is collected")
    timeout: Duration = Field(20.0, description="how long one collection may take; cut to 80% of a shorter "
                                                "interval")


class AgentConfig(StrictModel):
    """The agent itself: where it listens and keeps its state."""

    listen: ListenAddress = Field("127.0.0.1:9839", description="host:port of /metrics and the status page; "
                                  "keep it on localhost unless web_config sets TLS and basic auth")
    state_dir: Path = Field(default_factory=default_state_dir,
                            description="where the state database lives: $STATE_DIRECTORY under systemd, else "
                                        "/var/lib/vigil for root, else ~/.local/state/vigil")
    web_config: Path | None = Field(None, description="TLS and basic auth for the endpoint, in Prometheus' "
                                                      "web-config.yml format")
    workers: int = Field(8, ge=1, le=256, description="how many blocking collections run at once; integrity "
                                                      "checks get a quarter as many")
    backup_workers: int | None = Field(None, ge=1, le=256, description="how many backup evaluations run at once; "
                                       "default two per CPU core (at least 2, at most `workers`): a repository "
                                       "that changed is listed by a tool that is mostly CPU-bound")
    defaults: Defaults = Defaults()
    targets: tuple[Target, ...] = ()
    backups: tuple[entry_of("backups"), ...] = ()  # a section: its declaration names the rest (agent.section)

    @model_validator(mode="after")
    def _link_targets(self) -> AgentConfig:
        """Targets that name others (ssh's `via:`) get them here; a bad name is reported by check-config."""
        self.link()
        return self

    def link(self) -> list[tuple[tuple, str]]:
        """Give every target, then every section entry, the targets it names (ssh's `via:`, a drill's
        `compare.target`): the problems, as (field path, message), for a name that is missing or of the
        wrong kind."""
        by_name = {target.name: target for target in self.targets}
        problems = [(("targets", index, *loc), message) for index, target in enumerate(self.targets)
                    for loc, message in target.link(by_name)]
        for section in registry.sections():
            entries = self.entries(section)
            if section.link and entries:
                link = registry.load(section.link)
                problems += [((section.key, index, *loc), message) for index, entry in enumerate(entries)
                             for loc, message in link(entry, by_name)]
        return problems

    def entries(self, section: Section) -> tuple:
        """The entries of a declared section (the backup jobs)."""
        return getattr(self, section.key)

    def lists(self) -> list[tuple[str, str, tuple]]:
        """(key, what one entry is called, the entries) of `targets:` and of each declared section."""
        return [(key, what, getattr(self, key)) for key, what in list_names()]

    def schedule(self, target: TargetConfig) -> tuple[float, float]:
        """(interval, timeout) of a target; an inherited timeout is cut below the interval."""
        interval = target.interval or self.defaults.interval
        if target.timeout is not None:
            return interval, target.timeout
        return interval, min(self.defaults.timeout, interval * 0.8)


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        return self._text("")

    def as_warning(self) -> str:
        return self._text("warning: ")

    def _text(self, prefix: str) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {prefix}{self.path}: {self.message}" if self.path else f"{where}: {prefix}{self.message}"


class ConfigError(Exception):
    """One or more problems in a config file, each with its line and field path."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("\n".join(map(str, issues)))


@dataclass(frozen=True)
class LoadedConfig:
    config: AgentConfig
    source: str  # the file it came from, or EMBEDDED
    warnings: tuple[ConfigIssue, ...] = ()  # legal, but surely not what was meant


def load_config(path: Path | None = None) -> LoadedConfig:
    """The config at `path`; with no path, /etc/vigil/vigil.yaml or the embedded default."""
    if path is None:
        if not DEFAULT_PATH.exists():
            return LoadedConfig(default_config(), EMBEDDED)
        path = DEFAULT_PATH
    warnings: list[ConfigIssue] = []
    config = load_model(AgentConfig, path, _semantic_issues, _raw_issues, _warnings, warnings)
    return LoadedConfig(config, str(path), tuple(warnings))


def default_config() -> AgentConfig:
    """Monitor this host and listen on 127.0.0.1:9839."""
    hostname = socket.gethostname().split(".")[0] or "localhost"
    return AgentConfig.model_validate({"targets": [{"name": hostname, "kind": "host"}]})


def load_model(model: type[StrictModel], path: Path, checks=None, raw_checks=None, warn=None,
               warnings: list[ConfigIssue] | None = None) -> Any:
    """Load a YAML file into `model`; raise ConfigError naming every bad line, all in one pass.

    `raw_checks(data)` look at the mapping as written (so they report even when a field
    elsewhere is invalid), `checks(model)` at the validated model, and `warn(model, data)`
    adds what is legal but surely wrong to `warnings`.
    """
    file = str(path)
    try:
        data, lines = yamlfile.load(path)
    except yamlfile.YamlError as exc:
        raise ConfigError([ConfigIssue(file, exc.line, "", exc.message)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(file, 1, "", "the file must be a mapping of keys" + _what_file(path, ": "))])
    if data and not any(_known_or_close(key, model) for key in data):
        raise ConfigError([ConfigIssue(file, None, "", _not_this_kind_of_file(model, path, len(data)))])
    early = [_issue(loc, message, lines, file) for loc, message in (raw_checks(data) if raw_checks else [])]
    try:
        loaded = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_sorted(early + _issues(model, exc, data, lines, file))) from None
    except (ArithmeticError, RecursionError, TypeError, ValueError) as exc:  # a validator that did not say where
        raise ConfigError([ConfigIssue(file, lines.get(()), "", f"cannot validate the file: {exc}")]) from None
    problems = early + [_issue(loc, message, lines, file) for loc, message in (checks(loaded) if checks else [])]
    if problems:
        raise ConfigError(_sorted(problems))
    if warn is not None and warnings is not None:
        warnings += [_issue(loc, message, lines, file) for loc, message in warn(loaded, data)]
    return loaded


def _known_or_close(key: object, model: type[StrictModel]) -> bool:
    """A key the model takes, or one a typo away from it."""
    return bool(difflib.get_close_matches(str(key), list(model.model_fields), n=1, cutoff=0.6))


def _not_this_kind_of_file(model: type[StrictModel], path: Path, count: int) -> str:
    """For a file none of whose keys the model takes (`-c` at /etc/shadow, whose lines read as keys): what
    the file is, never what it holds."""
    return (f"none of its {count} top-level key{'s' * (count != 1)} is one this file takes "
            f"({', '.join(model.model_fields)}), so its content is not shown{_what_file(path, '; ')}: is it the "
            "file meant?")


def _what_file(path: Path, glue: str) -> str:
    """`glue` and what a file given by a link is, or "" for a file named as itself."""
    try:
        return f"{glue}it is a symbolic link to {os.readlink(path)}" if path.is_symlink() else ""
    except OSError:
        return ""


def _sorted(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """By line, each problem once."""
    return sorted(dict.fromkeys(issues), key=lambda issue: issue.line or 0)


def list_names() -> list[tuple[str, str]]:
    """(key, what one entry is called) of the lists of named entries: `targets:` and each declared section."""
    return [("targets", "target"), *((section.key, section.what) for section in registry.sections())]


def _raw_issues(data: dict) -> list[tuple[tuple, str]]:
    """Unique names, read from the mapping as written so that they show with every other problem."""
    problems = []
    for section, what in list_names():
        items = data.get(section)
        if isinstance(items, list):
            problems += _duplicate_names(items, section, what)
    return problems


def _semantic_issues(config: AgentConfig) -> list[tuple[tuple, str]]:
    """What one field cannot say alone: a timeout below its interval, a reference to another target, a file
    that is not there (agent.ondisk). First, the names are kept whole in every free text (agent.redact),
    this config's messages included."""
    redact.keep(name for _, _, name in _names(config))
    problems = config.link()
    for index, target in enumerate(config.targets):
        interval, timeout = config.schedule(target)
        if timeout >= interval:
            problems.append((("targets", index, "timeout"), "the timeout must be shorter than the interval"))
    if config.defaults.timeout >= config.defaults.interval and "timeout" in config.defaults.model_fields_set:
        problems.append((("defaults", "timeout"), "the timeout must be shorter than the interval"))
    return problems + [(loc, message) for loc, message, error in ondisk.problems(config) if error]


def _duplicate_names(items: list, section: str, what: str) -> list[tuple[tuple, str]]:
    problems, first = [], {}
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(((section, index, "name"),
                             f"duplicate {what} name `{name}` (also {section}[{first[name]}])"))
        first.setdefault(name, index)
    return problems


def _warnings(config: AgentConfig, data: dict) -> list[tuple[tuple, str]]:
    """Legal, but surely not meant: said by check-config and logged at start and reload."""
    warnings = []
    if not data:
        lists = " or ".join(f"{key}:" for key, _ in list_names())
        warnings.append(((), f"the file is empty: vigil watches nothing (add {lists})"))
    host, _ = split_listen(config.listen)
    if config.web_config is None and not _loopback(host):
        warnings.append((("listen",), f"listening on {config.listen} without web_config: anyone who reaches "
                                      "this host can read /metrics and the status page (set web_config: for TLS "
                                      "and basic auth, or listen on 127.0.0.1)"))
    for section in registry.sections():
        for index, entry in enumerate(config.entries(section)):
            warn = registry.load(section.warnings)
            warnings += [((section.key, index, *loc), message) for loc, message in warn(entry)]
    warnings += [(loc, message) for loc, message, error in ondisk.problems(config) if not error]
    return warnings + list(file_warnings(data)) + _names_holding_secrets(config)


def _names(config: AgentConfig) -> Iterator[tuple[tuple, str, str]]:
    """(field path, what, name) of every configured name: the label values vigil never rewrites."""
    for section, what, items in config.lists():
        for index, item in enumerate(items):
            yield (section, index, "name"), what, item.name


def _names_holding_secrets(config: AgentConfig) -> list[tuple[tuple, str]]:
    """A name is shown as written, so a secret inside one is readable wherever the name is (never the
    secret itself in the message: its field path)."""
    secrets = list(secret_fields(config))
    return [(loc, f"the name holds the value of the secret in {_format_path(where)}: names are never masked "
                  f"(metrics, the status page, logs), so that part of the secret shows wherever the name does; "
                  f"rename the {what} or change the secret")
            for loc, what, name in _names(config) for where, secret in secrets if secret in name]


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _issues(model, exc: ValidationError, data, lines, file) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors(include_url=False, include_input=False):
        loc, kind = error["loc"], error["type"]
        if kind == "extra_forbidden":
            message = _unknown_key_message(model, loc, data)
        elif kind == "missing":
            loc, message = loc[:-1], f"missing required key `{loc[-1]}`"
        elif kind in ("union_tag_not_found", "union_tag_invalid"):
            loc, message = _union_tag_message(model, loc, data, error["ctx"])
        elif kind in _PLAIN_MESSAGES:
            message = _PLAIN_MESSAGES[kind]
        else:
            message = _plain(error["msg"])
        issues.append(_issue(loc, message, lines, file))
    return issues


_PLAIN_MESSAGES = {
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected text (quote it if it looks like a number or a date)",
    "path_type": "expected a path",
}


def _union_tag_message(model, loc: tuple, data, context: dict) -> tuple[tuple, str]:
    """A section of several shapes told apart by one key (snmp's `version:`): that key missing or unknown."""
    key = context["discriminator"].strip("'")
    owner = _model_at(model, loc[:-1], data)
    union = owner.model_fields[loc[-1]].annotation if owner is not None else None
    tags = [f"`{tag}`" for member in get_args(union) if (field := member.model_fields.get(key))
            for tag in get_args(field.annotation)]
    valid = list(dict.fromkeys(tags))  # `3` once, whether written 3 or "3"
    if "tag" not in context:
        return loc, f"missing required key `{key}` ({' or '.join(valid)})"
    return (*loc, key), f"unknown {key} `{context['tag']}`; valid: {', '.join(valid)}"


def _plain(message: str) -> str:
    """pydantic's wording as a person would say it: `Input should be greater than 0` -> `must be greater than 0`."""
    message = message.removeprefix("Value error, ")
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ").split(", unable to")[0]
    return message.replace("String should have at most", "must have at most").replace(
        "String should match pattern", "must match the pattern")


def _issue(loc: tuple, message: str, lines: dict, file: str) -> ConfigIssue:
    """Place an error at the deepest line the YAML has for it; skip union tags in the path."""
    path: tuple = ()
    for part in loc:
        if path + (part,) in lines:
            path += (part,)
    return ConfigIssue(file, lines.get(path, lines.get(())), _format_path(path), message)


def _format_path(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _unknown_key_message(model, loc: tuple, data) -> str:
    key = str(loc[-1])
    owner = _model_at(model, loc[:-1], data)
    if owner is None:
        return f"unknown key `{key}`"
    if key in (renamed := getattr(owner, "RENAMED", {})):
        return f"unknown key `{key}`: it is now {renamed[key]}"
    valid = list(owner.model_fields)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key `{key}`; did you mean `{close[0]}`?"
    return f"unknown key `{key}`; valid keys: {', '.join(valid)}"


def _model_at(model, loc: tuple, data):
    """The model that validated the mapping at `loc`, following `kind:` dispatch and union tags."""
    node, key = data, "kind"
    for part in loc:
        if isinstance(node, dict) and part == node.get(key) and part not in getattr(model, "model_fields", {}):
            continue  # a discriminated union's tag
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return None
            node = node[part]
            model = _concrete(model, node)
            continue
        if model is None or not isinstance(node, dict) or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        node, key = node.get(part), field.discriminator or "kind"
        model = _concrete(_model_in(field.annotation, node, key), node)
    return model


def _concrete(model, node):
    """The model a `kind:` picks, for dispatched bases (targets, backup locations)."""
    if isinstance(model, type) and issubclass(model, Dispatched) and isinstance(node, dict):
        return model.concrete(node.get("kind")) or model
    return model


def _model_in(annotation, node, key: str = "kind"):
    """The pydantic model inside an annotation, picking a union member by its `key` (`kind`, snmp's `version`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, Lazy):
        return annotation.model
    members = [m for arg in get_args(annotation) if (m := _model_in(arg, node, key)) is not None]
    if isinstance(node, dict):
        for member in members:
            tag = member.model_fields.get(key)
            if tag is not None and node.get(key) in get_args(tag.annotation):
                return member
    return members[0] if len(members) == 1 else None
