"""`kind: nut`: a UPS behind upsd, its login and STARTTLS."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from agent.ondisk import CaFile
from agent.schema import Duration, TargetConfig
from agent.secrets import Secret, one_line

Password = Annotated[Secret, one_line("one line of upsd's protocol")]  # a line break would start a command


class NutConfig(TargetConfig):
    kind: Literal["nut"]
    host: str = Field(description="The upsd host.", min_length=1)
    port: int = Field(3493, description="upsd's TCP port.", ge=1, le=65535)
    ups: str = Field(description="The UPS name on that upsd (as in `upsc -l`).", min_length=1)
    username: str | None = Field(None, description="An upsd.users user, when upsd asks for one.")
    password: Password | None = Field(None, description="Its password, by reference.")
    tls: Literal["if_offered", "required", "off"] = Field(
        "if_offered", description="STARTTLS: if_offered (use it when upsd has a certificate, verified), "
                                  "required, or off.")
    ca_file: CaFile | None = Field(None, description="A CA file for upsd's certificate; wins over SSL_CERT_FILE.")
    nut_timeout: Duration = Field(5.0, description="How long to wait for each upsd reply.")
