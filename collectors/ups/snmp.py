"""A small SNMP client on pysnmp 7 (asyncio): one engine per event loop, GET and GETBULK.

One long-lived SnmpEngine serves every device of the agent (an engine per device costs
memory and a socket each; `engine()` says when a v3 key set gets its own); it is made
lazily per event loop, since pysnmp binds its transport to the loop that first uses it.
`lookupMib=False` keeps MIB modules out: the collectors speak numeric OIDs. Values come
back as plain Python (int, str) or None for noSuchInstance/noSuchObject/endOfMibView, so
callers parse by value, not by type.

pysnmp keeps what it discovered of a v3 device (its engine ID, boots and time) for 300 s.
A device restarted with a new engine ID meanwhile answers requests for the old one with
reports pysnmp cannot read, and every poll times out until that entry expires: a v3
device that answered earlier polls and answers nothing at the first request of a poll
is forgotten (`forget_peer`) and EngineForgotten, a SessionLost, makes the agent poll it
once more, discovering it afresh. A device that is really down fails that second poll
with its reason, within the job's timeout (a poll's requests share 0.9 of it, and only
its first request is tried twice).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import weakref
from collections.abc import Sequence
from typing import Annotated, Literal

from pyasn1.type import univ
from pydantic import Field
from pysnmp.hlapi.v3arch import asyncio as hl
from pysnmp.hlapi.varbinds import CommandGeneratorVarBinds
from pysnmp.proto import errind, rfc1905
from pysnmp.proto.mpmod.rfc3412 import SnmpV3MessageProcessingModel

from agent.collector import Emitter, SessionLost
from agent.schema import StrictModel
from agent.secrets import Secret

# per event loop: "" -> the shared engine, "user/fingerprint" -> a v3 key set's own, "users" -> first key sets
_ENGINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict] = weakref.WeakKeyDictionary()
_MISSING = (rfc1905.NoSuchInstance, rfc1905.NoSuchObject, rfc1905.EndOfMibView)
_TOO_BIG = 1  # errorStatus tooBig: the reply would not fit, ask for fewer varbinds

AUTH = {"sha": hl.usmHMACSHAAuthProtocol, "sha256": hl.usmHMAC192SHA256AuthProtocol,
        "sha512": hl.usmHMAC384SHA512AuthProtocol}
PRIV = {"aes": hl.usmAesCfb128Protocol, "aes128": hl.usmAesCfb128Protocol, "aes256": hl.usmAesCfb256Protocol}


class SnmpV2c(StrictModel):
    version: Literal["2c"] = Field(description="SNMP version 2c (community based).")
    community: Secret = Field(description="The community, by reference (`${cred:ups_community}`).")


class SnmpV3(StrictModel):
    version: Literal[3, "3"] = Field(description="SNMP version 3 with authPriv (authentication and encryption).")
    user: str = Field(description="The USM user name.", min_length=1)
    auth_protocol: Literal["sha", "sha256", "sha512"] = Field(
        "sha", description="Authentication: sha (HMAC-SHA-96), sha256 (HMAC-SHA-192/256) or sha512.")
    auth_key: Secret = Field(description="The authentication passphrase, by reference.")
    priv_protocol: Literal["aes", "aes128", "aes256"] = Field(
        "aes", description="Encryption: aes (= aes128, AES-128-CFB) or aes256 (AES-256-CFB).")
    priv_key: Secret = Field(description="The privacy passphrase, by reference.")
    context: str = Field("", description="The SNMPv3 context name, when the agent needs one.")


# told apart by `version:`, so a mistake is reported against the version it names, not every version's keys
SnmpAuth = Annotated[SnmpV2c | SnmpV3, Field(discriminator="version")]


class SnmpError(Exception):
    """A request that got no usable answer; the message names the device and the likely fix."""


class EngineForgotten(SnmpError, SessionLost):
    """A v3 device that answered earlier polls answered nothing now: it may have restarted with
    a new engine ID. What pysnmp knew of it is forgotten; the agent polls it once more."""


def engine(auth: SnmpAuth) -> hl.SnmpEngine:
    """The shared engine of the running event loop, for every v2c device and every v3 user name.

    pysnmp keys its USM users by name alone until it knows a device's engine ID, and swaps
    the keys in place when the same name comes with other keys: two cards with user `vigil`
    and different passwords would fail each other's requests at random. The first key set
    of a user name gets the shared engine; any other set gets an engine of its own.
    """
    loop = asyncio.get_running_loop()
    engines = _ENGINES.setdefault(loop, {})
    name = ""
    if isinstance(auth, SnmpV3):
        keys = "\0".join((auth.auth_protocol, auth.auth_key.get_secret_value(), auth.priv_protocol,
                          auth.priv_key.get_secret_value()))
        fingerprint = hashlib.sha256(keys.encode()).hexdigest()
        owners = engines.setdefault("users", {})
        if owners.setdefault(auth.user, fingerprint) != fingerprint:
            name = f"{auth.user}/{fingerprint}"
    found = engines.get(name)
    if found is None:
        found = engines[name] = hl.SnmpEngine()
    return found


def forget_peer(snmp_engine: hl.SnmpEngine, address: tuple[str, int]) -> None:
    """Drop the engine ID pysnmp cached for the device at `address`, so the next request discovers it.

    pysnmp has no public call for this: it reaches into the v3 message processing model's
    cache and expiry queue (pysnmp is pinned in constraints.txt; tests/test_sessions.py
    restarts a v3 agent to prove it), removing the key from the queue too, whose timer
    would otherwise fail to delete it.
    """
    model = snmp_engine.message_processing_subsystems[SnmpV3MessageProcessingModel.MESSAGE_PROCESSING_MODEL_ID]
    cache = model._SnmpV3MessageProcessingModel__engineIdCache
    expiring = model._SnmpV3MessageProcessingModel__engineIdCacheExpQueue
    for key in [key for key in cache if tuple(key[1]) == tuple(address)]:
        del cache[key]
        for keys in expiring.values():
            while key in keys:
                keys.remove(key)


def plain(value: object) -> object:
    """A pysnmp value as int, str or None (missing), so parsers never see pysnmp types."""
    if value is None or isinstance(value, (*_MISSING, univ.Null)):
        return None
    if isinstance(value, univ.ObjectIdentifier):  # the wire decodes to pyasn1's base types
        return str(value)
    if isinstance(value, univ.OctetString):
        return value.asOctets().decode("utf-8", "replace")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Session:
    """One device: its address, credentials and timing; every PDU is counted on the job's counters."""

    def __init__(self, name: str, host: str, port: int, auth: SnmpAuth, timeout: float, retries: int):
        self.name, self.where = name, f"{host}:{port}"
        self._address, self._auth, self._timeout, self._retries = (host, port), auth, timeout, retries
        self._target: hl.UdpTransportTarget | None = None
        self._answered: Emitter | None = None  # the poll (its Emitter) that last got an answer
        if isinstance(auth, SnmpV3):
            self._credentials = hl.UsmUserData(
                auth.user, auth.auth_key.get_secret_value(), auth.priv_key.get_secret_value(),
                authProtocol=AUTH[auth.auth_protocol], privProtocol=PRIV[auth.priv_protocol])
            self._context = hl.ContextData(contextName=auth.context)
        else:
            self._credentials = hl.CommunityData(auth.community.get_secret_value(), mpModel=1)  # noqa: S508 — v2c chosen by the config; v3 offered
            self._context = hl.ContextData()

    async def open(self) -> None:
        try:
            self._target = await hl.UdpTransportTarget.create(self._address, timeout=self._timeout,
                                                              retries=self._retries)
        except Exception as exc:  # pysnmp wraps resolver errors in its own type, the gaierror's text in it
            said = "the host name does not resolve" if "gaierror" in str(exc) else f"cannot resolve it ({exc})"
            raise SnmpError(f"UPS {self.name} ({self._address[0]}): {said}; check `host:` and DNS") from None

    async def get(self, out: Emitter, oids: Sequence[str]) -> dict[str, object]:
        """{oid: value} for the OIDs, in one PDU unless the device says tooBig (then halves)."""
        status, index, binds = await self._call(out, hl.get_cmd, _varbinds(tuple(oids)))
        if status == _TOO_BIG and len(oids) > 1:
            half = len(oids) // 2
            return {**await self.get(out, oids[:half]), **await self.get(out, oids[half:])}
        self._check(status, index, oids)
        return {str(oid): plain(value) for oid, value in binds}

    async def bulk(self, out: Emitter, columns: Sequence[str], rows: int) -> list[tuple[str, object]]:
        """One GETBULK: the first `rows` rows of each column (the caller filters by prefix)."""
        status, index, binds = await self._call(out, hl.bulk_cmd, _varbinds(tuple(columns)), 0, max(1, rows))
        if status == _TOO_BIG and rows > 1:
            return await self.bulk(out, columns, rows // 2)
        self._check(status, index, columns)
        return [(str(oid), plain(value)) for oid, value in binds]

    async def _call(self, out: Emitter, command, binds, *bulk: int):
        if self._target is None:
            await self.open()
        snmp_engine = engine(self._auth)
        indication, status, index, result = await command(snmp_engine, self._credentials, self._target,
                                                          self._context, *bulk, *binds, lookupMib=False)
        if indication:
            out.request("snmp", _code(indication))
            why = f"UPS {self.name} ({self.where}): {_explain(indication, self._auth, self._timeout, self._retries)}"
            if self._rediscover(indication, out):
                forget_peer(snmp_engine, self._target.transport_address)
                raise EngineForgotten(why)
            raise SnmpError(why)
        out.request("snmp", "ok" if not int(status) else _status_name(int(status)))
        self._answered = out
        return int(status), int(index), result

    def _rediscover(self, indication: object, out: Emitter) -> bool:
        """A v3 device silent at a poll's first request, which answered an earlier poll."""
        return (isinstance(self._auth, SnmpV3) and isinstance(indication, errind.RequestTimedOut)
                and self._answered is not None and self._answered is not out)

    def _check(self, status: int, index: int, oids: Sequence[str]) -> None:
        if status:
            where = f" at {oids[index - 1]}" if 0 < index <= len(oids) else ""
            raise SnmpError(f"UPS {self.name} ({self.where}): the agent answered {_status_name(status)}{where}")


@functools.cache
def _varbinds(oids: tuple[str, ...]) -> tuple[hl.ObjectType, ...]:
    """Request varbinds made once per OID list: pysnmp resolves each new ObjectIdentity against
    its MIB view (even with lookupMib=False), which was half the agent's CPU per poll; a
    resolved one is marked clean and reused as it is."""
    view = CommandGeneratorVarBinds.get_mib_view_controller(_VIEW_CACHE)
    return tuple(hl.ObjectType(hl.ObjectIdentity(oid)).resolve_with_mib(view) for oid in oids)


_VIEW_CACHE: dict = {}
_STATUS = {1: "too_big", 2: "no_such_name", 3: "bad_value", 4: "read_only", 5: "gen_err", 6: "no_access"}


def _status_name(status: int) -> str:
    return _STATUS.get(status, f"error_{status}")


def _code(indication: object) -> str:
    """A bounded code for vigil_api_requests_total."""
    if isinstance(indication, errind.RequestTimedOut):
        return "timeout"
    if isinstance(indication, errind.WrongDigest):
        return "wrong_digest"
    if isinstance(indication, errind.UnknownUserName):
        return "unknown_user"
    if isinstance(indication, errind.DecryptionError):
        return "decryption_error"
    return "error"


def _explain(indication: object, auth: SnmpAuth, timeout: float, retries: int) -> str:
    if isinstance(indication, errind.RequestTimedOut):
        tries = f"{timeout:g}s" + (f" ({retries + 1} tries)" if retries else "")
        if isinstance(auth, SnmpV2c):
            return f"no SNMP answer within {tries}: the device is down, or the community is wrong"
        return f"no SNMP answer within {tries}: the device is down, or the v3 user, keys or context are wrong"
    if isinstance(indication, errind.WrongDigest):
        return "the SNMPv3 authentication failed (wrong digest): check `auth_key` and `auth_protocol`"
    if isinstance(indication, errind.UnknownUserName):
        return "the device does not know this SNMPv3 user: check `user`"
    if isinstance(indication, errind.DecryptionError):
        return "the SNMPv3 reply could not be decrypted: check `priv_key` and `priv_protocol`"
    return f"SNMP request failed: {indication}"
