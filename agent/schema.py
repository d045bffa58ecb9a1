"""The building blocks of every config model: strict models, units, names, `kind:` dispatch.

Targets and backup locations are chosen by `kind:`; the kind picks a class from the
registry and that class's own `Config` model validates the rest, so only the modules a
config uses are ever imported.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    PlainValidator,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from agent import registry
from agent.redact import userinfo_in_url
from agent.units import parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")


def _check_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError("a name is letters, digits and `_ . : @ -`, starting with a letter or digit, at most 128 "
                         "characters (it becomes a label value)")
    return value


Name = Annotated[str, PlainValidator(_check_name)]
_TOKEN_IN_QUERY = re.compile(r"[?&][\w.-]*(sig|signature|token|key|secret|password)[\w.-]*=", re.I)


def _no_credentials(url: object) -> object:
    """A credential inside a URL would reach logs, errors and `ps`; it has a secret field of its own."""
    if userinfo_in_url(str(url)) or _TOKEN_IN_QUERY.search(str(url)):
        raise ValueError("must not hold credentials (user:password@ or a token in the query): "
                         "give them by reference in the target's credential field")
    return url


CredentialFreeUrl = Annotated[str, AfterValidator(_no_credentials)]
CredentialFreeHttpUrl = Annotated[HttpUrl, AfterValidator(_no_credentials)]


class StrictModel(BaseModel):
    """Unknown keys are errors and loaded values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Dispatched(StrictModel):
    """A model whose `kind:` picks the concrete model from a registry map."""

    KINDS: ClassVar[Mapping[str, str]] = {}
    kind: str

    @classmethod
    def concrete(cls, kind: object) -> type[Dispatched] | None:
        path = cls.KINDS.get(kind) if isinstance(kind, str) else None
        return registry.load(path).Config if path else None


def dispatched(base: type[Dispatched], what: str) -> Any:
    """An annotation that validates a mapping with the model its `kind:` names."""

    def validate(value: object) -> Dispatched:
        if isinstance(value, base):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"each {what} must be a mapping with a `kind:`")
        kind = value.get("kind")
        model = base.concrete(kind)
        if model is None:
            error = ({"type": "missing", "loc": ("kind",), "input": value} if kind is None else
                     {"type": choice_error("kind", str(kind), base.KINDS), "loc": ("kind",), "input": kind})
            raise ValidationError.from_exception_data(what, [error])
        return model.model_validate(value)

    return Annotated[base, PlainValidator(validate)]


@dataclass(frozen=True)
class Lazy:
    """Marks an annotation validated by the entry model of a declared section, imported on first use."""

    section: str  # its key in the config

    @property
    def model(self) -> type[BaseModel]:
        return registry.load(registry.section(self.section).entry)


def entry_of(section: str) -> Any:
    """An annotation for one entry of a section the registry declares (`backups:`), so that `agent`
    imports no concrete kind."""
    marker = Lazy(section)

    def validate(value: object) -> BaseModel:
        model = marker.model
        return value if isinstance(value, model) else model.model_validate(value)

    return Annotated[Any, PlainValidator(validate), marker]


def choice_error(what: str, given: str, valid: Any) -> PydanticCustomError:
    close = difflib.get_close_matches(given, list(valid), n=1)
    hint = f"did you mean `{close[0]}`?" if close else "valid: " + ", ".join(sorted(valid))
    return PydanticCustomError("unknown_choice", f"unknown {what} `{given}`; {hint}")


class TargetConfig(Dispatched):
    """The keys every target has; each collector's `Config` subclasses this."""

    KINDS: ClassVar[Mapping[str, str]] = registry.COLLECTORS
    name: Name = Field(description="the target's name: the `target` label of its series")
    interval: Duration | None = Field(None, description="how often it is collected (default: defaults.interval)")
    timeout: Duration | None = Field(None, description="how long one collection may take, shorter than the "
                                                       "interval (default: defaults.timeout)")

    def link(self, targets: Mapping[str, TargetConfig]) -> list[tuple[tuple, str]]:
        """Resolve references to other targets (ssh's `via:`), once the whole config is read.

        Returns problems as (field path inside this target, message); the default has no references.
        """
        return []
