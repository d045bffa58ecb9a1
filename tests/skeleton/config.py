"""`kind: counting`: where its counter starts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.schema import TargetConfig


class CountingConfig(TargetConfig):
    kind: Literal["counting"]
    start: int = Field(0, description="the first value of the tick counter")
