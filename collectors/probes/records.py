"""DNS records in one canonical text, so that an answer and what people wrote compare as DNS compares them.

dnspython's text of a record, lower-cased, names without the root's trailing dot: `10 mail.example.org`
for `10 Mail.example.org.`, `2001:db8::10` for `2001:DB8:0::10`.
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass

from agent.reasons import describe


def canonical(rdata: dns.rdata.Rdata) -> str:
    return rdata.to_text(origin=dns.name.root, relativize=True).lower()


def parse(rtype: str, text: str) -> str:
    """A record written by people, in the canonical text (ValueError when it is not one of `rtype`)."""
    try:
        return canonical(dns.rdata.from_text(dns.rdataclass.IN, rtype, text, origin=dns.name.root))
    except dns.exception.DNSException as error:
        raise ValueError(f"{text!r} is not a record of type {rtype} ({describe(error)})") from None
