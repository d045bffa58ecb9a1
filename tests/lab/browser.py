"""Debian's headless Chromium, to look at the status page as an administrator's browser does."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.lab.harness import need

# Without the background-networking flags Chromium keeps dialling out on a closed network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(url: str, profile: Path, *, screenshot: Path | None = None, size: str = "1280,900") -> str:
    """The page's DOM after scripts ran (and a screenshot if asked), as Chromium renders it."""
    binary = need("chromium", "apt-get install chromium")
    argv = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}"]
    argv += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# Put at the end of a page shown in a frame of the wanted width: lists what a reader cannot see without
# scrolling sideways (text whose box ends past the right edge, inside a scrolling box or not), in the
# outer page's <body data-offscreen>.
_MEASURE = """<script>
const width = document.documentElement.clientWidth, cut = [];
for (const node of document.body.querySelectorAll("*")) {
  const own = [...node.childNodes].some(c => c.nodeType === Node.TEXT_NODE && c.textContent.trim());
  const box = node.getBoundingClientRect();
  if (own && box.width && box.right > width + 1) cut.push(node.textContent.trim().slice(0, 60));
}
const page = document.documentElement.scrollWidth;
if (page > width) cut.push(`the page is ${page} px wide, the window ${width} px`);
parent.document.body.dataset.offscreen = JSON.stringify(cut);
</script>"""


def offscreen(page: str, profile: Path, size: str) -> list[str]:
    """The texts of `page` (its HTML) that end past the right edge of a window of `size`, as Chromium lays it out.

    The page is laid out in a frame of that size: a headless window is never narrower than 500 px
    (a screenshot is cut to the size asked, the layout is not).
    """
    import html
    import json
    import re

    width, height = size.split(",")
    framed = html.escape(page.replace("</body>", _MEASURE + "</body>"), quote=True)
    measured = profile.parent / "measured.html"
    measured.write_text(f"<!doctype html><body style='margin:0'><iframe width='{width}' height='{height}' "
                        f"style='border:0' srcdoc=\"{framed}\"></iframe></body>")
    dom = chromium(measured.as_uri(), profile, size="1280,900")
    found = re.search(r'<body[^>]* data-offscreen="([^"]*)"', dom)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))
