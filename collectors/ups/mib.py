"""What the MIB readers (rfc1628, apc) share: each is `read(session, out, now) -> Reading`, one GET (and a
GETBULK) of its MIB's objects, raising NoUpsObjects when the device has none of them."""

from __future__ import annotations

from collectors.ups.snmp import SnmpError


class NoUpsObjects(SnmpError):
    """The device answers SNMP but not with the UPS objects of the MIB asked for."""
