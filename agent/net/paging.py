"""The bounds of one paged listing (Graph's next links, Meraki's Link headers, Veeam's skip and total).

The transport bounds each answer (agent/net/http.py: 32 MiB, one deadline), but a listing
is as many answers as the server names: one whose next link names the page just read, or
that never stops naming new ones, would be read until the job's time or the host's memory
ran out, and what the caller keeps of each page would pile up meanwhile. A listing stops,
with a reason that says which, when a next link repeats one already followed, or when it
passes MAX_ITEMS items or MAX_BYTES bytes: far beyond a real tenant, organization or
server (Entra ID's directory holds 300,000 objects by default, and 256 MiB is some 250,000
app registrations or 400,000 Meraki devices).
"""

from __future__ import annotations

MAX_ITEMS = 500_000
MAX_BYTES = 256 << 20


class ListingError(Exception):
    """A listing stopped before its end: one sentence, for the caller to prefix with what it was listing."""


class Listing:
    """Counts one listing's pages as they come; raises ListingError past a bound or at a repeated link."""

    def __init__(self, max_items: int = MAX_ITEMS, max_bytes: int = MAX_BYTES):
        self.max_items, self.max_bytes = max_items, max_bytes
        self.items = self.bytes = self.pages = 0
        self._links: set[str] = set()

    def add(self, items: int, size: int) -> None:
        """One page of `items` items in `size` bytes (its body as sent)."""
        self.pages += 1
        self.items += items
        self.bytes += size
        if self.items > self.max_items:
            raise ListingError(f"the listing passed {self.max_items:,} items after {self.pages} pages without an "
                               "end, and was stopped: a server fault, or a listing larger than vigil reads")
        if self.bytes > self.max_bytes:
            raise ListingError(f"the listing passed {self.max_bytes >> 20} MiB after {self.pages} pages without an "
                               "end, and was stopped: a server fault, or a listing larger than vigil reads")

    def follow(self, link: str) -> str:
        """The next page's link, unless this listing followed it already (then the next links do not end)."""
        if link in self._links:
            raise ListingError(f"a next link names a page already read: the next links do not end (a server "
                               f"fault); stopped after {len(self._links) + 1} pages")
        self._links.add(link)
        return link
