"""The probe kinds' models: what to probe, and what counts as success."""

from __future__ import annotations

from pydantic import Field

from agent.ondisk import CaFile
from agent.schema import StrictModel


class TlsOptions(StrictModel):
    """How a probe verifies the server's certificate: on, always, against the system store or ca_file."""

    ca_file: CaFile | None = Field(None, description="A CA file (PEM) to verify the server's certificate with, "
                                                     "instead of the system's store.")
    server_name: str | None = Field(None, description="The name the certificate must be for (and sent as SNI), "
                                                      "when not the host probed.")
