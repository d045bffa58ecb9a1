"""STARTTLS: each protocol's plain-text words before its TLS handshake, as a tls.Preamble.

SMTP (EHLO, STARTTLS offered, STARTTLS), IMAP (`STARTTLS`), POP3 (`STLS`), LDAP (the
StartTLS extended operation, RFC 4511 4.14) and PostgreSQL (its SSLRequest, answered `S`).
A server that does not offer it, or refuses it, is a finding, in words that quote its reply.
"""

from __future__ import annotations

import asyncio
import struct

from collectors.probes.phases import ProbeFailed
from collectors.probes.tls import Preamble

EHLO = b"EHLO vigil.invalid\r\n"  # RFC 2606: a name that claims to be nobody's
LDAP_STARTTLS = b"0\x1d\x02\x01\x01w\x18\x80\x161.3.6.1.4.1.1466.20037"  # ExtendedRequest, message 1
SSL_REQUEST = struct.pack("!II", 8, 80877103)


async def _line(reader: asyncio.StreamReader) -> str:
    line = await reader.readline()
    if not line:
        raise ProbeFailed("the server closed the connection before STARTTLS")
    return line.decode(errors="replace").rstrip("\r\n")


async def _smtp_reply(reader: asyncio.StreamReader) -> list[str]:
    """One SMTP reply: its lines, up to the one whose code is followed by a space."""
    lines = [await _line(reader)]
    while lines[-1][3:4] == "-":
        lines.append(await _line(reader))
    return lines


async def smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    greeting = await _smtp_reply(reader)
    if not greeting[-1].startswith("220"):
        raise ProbeFailed(f"the SMTP server's greeting is not 220: {greeting[-1]!r}")
    writer.write(EHLO)
    offered = await _smtp_reply(reader)
    if not any(line[4:].strip().upper() == "STARTTLS" for line in offered if line.startswith("250")):
        raise ProbeFailed(f"the SMTP server does not offer STARTTLS (its EHLO reply: {offered[-1]!r})")
    writer.write(b"STARTTLS\r\n")
    _granted((await _smtp_reply(reader))[-1], "220", "the SMTP server refused STARTTLS")


async def imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _greeted(reader, "IMAP", "* OK")
    writer.write(b"v1 STARTTLS\r\n")
    while not (reply := await _line(reader)).startswith("v1 "):
        pass  # untagged lines (a capability list) before the tagged answer
    _granted(reply, "v1 OK", "the IMAP server refused STARTTLS")


async def pop3(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _greeted(reader, "POP3", "+OK")
    writer.write(b"STLS\r\n")
    _granted(await _line(reader), "+OK", "the POP3 server refused STLS")


async def _greeted(reader: asyncio.StreamReader, protocol: str, good: str) -> None:
    greeting = await _line(reader)
    if not greeting.startswith(good):
        raise ProbeFailed(f"the {protocol} server's greeting is not {good.removeprefix('* ')}: {greeting!r}")


def _granted(reply: str, good: str, refusal: str) -> None:
    if not reply.startswith(good):
        raise ProbeFailed(f"{refusal}: {reply!r}")


async def ldap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(LDAP_STARTTLS)
    message = await _ber(reader, 0x30)  # LDAPMessage: messageID, then the ExtendedResponse
    response = _inner(_inner(message, 0x02)[1], 0x78)[0]
    code = response[2] if response[:2] == b"\x0a\x01" else None  # resultCode, ENUMERATED
    if code != 0:
        raise ProbeFailed(f"the LDAP server refused StartTLS (result code {code})")


async def postgres(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(SSL_REQUEST)
    answer = await reader.readexactly(1)
    if answer != b"S":
        raise ProbeFailed(f"the PostgreSQL server does not accept TLS (it answered {answer!r} to the SSLRequest; "
                          "set ssl = on)")


async def _ber(reader: asyncio.StreamReader, tag: int) -> bytes:
    """The contents of one BER element of `tag`, read from the stream."""
    head = await reader.readexactly(2)
    if head[0] != tag:
        raise ProbeFailed(f"the LDAP server answered StartTLS with something else (tag {head[0]:#x})")
    length = head[1]
    if length & 0x80:
        length = int.from_bytes(await reader.readexactly(length & 0x7F), "big")
    if length > 65536:
        raise ProbeFailed(f"the LDAP server's answer to StartTLS is {length} bytes long")
    return await reader.readexactly(length)


def _inner(data: bytes, tag: int) -> tuple[bytes, bytes]:
    """The contents of the BER element of `tag` at the start of `data`, and what follows it."""
    if not data or data[0] != tag:
        raise ProbeFailed(f"the LDAP server's answer to StartTLS is not an extended response (tag {data[:1].hex()})")
    length, start = data[1], 2
    if length & 0x80:
        start = 2 + (length & 0x7F)
        length = int.from_bytes(data[2:start], "big")
    return data[start:start + length], data[start + length:]


PREAMBLES: dict[str, Preamble] = {"smtp": smtp, "imap": imap, "pop3": pop3, "ldap": ldap, "postgres": postgres}
