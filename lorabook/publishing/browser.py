"""A headless Chromium for the site check and the handouts, and a static server for the site.

The browser is the system's Chromium (Debian's ``chromium`` package, installed with apt; no
browser is ever downloaded), driven by Playwright. Requests that leave the machine are refused
and recorded, so a page that needs the network fails its check instead of hanging.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "find_chromium",
    "serve",
    "chromium",
    "is_local",
    "redirect_target",
]

CHROMIUM_VARIABLE = "LORABOOK_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    # As root in a container there is no user namespace for the sandbox; no GPU either.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # Keep the browser itself off the network: this machine has none, and the site needs none.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def find_chromium() -> str:
    """The Chromium executable: ``LORABOOK_CHROMIUM``, else the first of ``CHROMIUM_NAMES``.

    Raises
    ------
    FileNotFoundError
        If none is installed, with the command that installs Debian's package.
    """
    configured = os.environ.get(CHROMIUM_VARIABLE, "").strip()
    if configured:
        if not Path(configured).is_file():
            raise FileNotFoundError(f"{CHROMIUM_VARIABLE}={configured!r} is not a file")
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no Chromium found (looked for " + ", ".join(CHROMIUM_NAMES) + "); on Debian or Ubuntu: "
        "apt-get install -y chromium, or set " + CHROMIUM_VARIABLE
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def is_local(url: str) -> bool:
    """Whether a request stays on this machine (the local server, files, inline data)."""
    return url.startswith(("http://127.0.0.1:", "file://", "data:", "blob:", "about:"))


@contextlib.asynccontextmanager
async def chromium(viewport: tuple[int, int] = (1366, 768)) -> AsyncIterator[Any]:
    """A Playwright browser context on the system's Chromium, with the network cut off.

    The default window is 1366 x 768 pixels, the most common laptop screen.

    Every request that does not stay on this machine is aborted and appended to the context's
    ``external_requests`` list (an attribute set here). The API is Playwright's asynchronous
    one, so that several pages load at once.
    """
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=find_chromium(), args=CHROMIUM_FLAGS
        )
        try:
            context = await browser.new_context(
                viewport={"width": viewport[0], "height": viewport[1]},
                service_workers="block",
            )
            context.external_requests = []

            async def route(route: Any) -> None:
                if is_local(route.request.url):
                    await route.continue_()
                else:
                    context.external_requests.append(route.request.url)
                    await route.abort("internetdisconnected")

            await context.route("**/*", route)
            yield context
        finally:
            await browser.close()


WAIT_FOR_PAGE = """async () => {
  // Every equation typeset, every image decoded (lazy ones too), fonts loaded; at most 30 s.
  const ready = (async () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await MathJax.startup.promise;
    }
    await Promise.all([...document.images].map((image) => {
      image.loading = "eager";
      return image.decode().catch(() => null);
    }));
    if (document.fonts) { await document.fonts.ready; }
    return true;
  })();
  const late = new Promise((resolve) => setTimeout(() => resolve(false), 30000));
  return await Promise.race([ready, late]);
}"""

REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.IGNORECASE)


def redirect_target(page: Path) -> str | None:
    """The target of a redirect stub (the site's root ``index.html``), or ``None``."""
    text = page.read_text(encoding="utf-8", errors="replace")
    match = REDIRECT.search(text) if len(text) < 2000 else None
    return match.group(1) if match else None


MATH_PROBLEMS = r"""(add, snippet) => {
  // add(element, message) for every equation MathJax did not render and for TeX left as text.
  for (const math of document.querySelectorAll(".math")) {
    if (!math.querySelector("mjx-container")) {
      add(math, "equation not rendered: " + snippet(math.textContent));
    }
  }
  for (const error of document.querySelectorAll("mjx-merror")) {
    add(error, "MathJax error: " + (error.getAttribute("data-mjx-error") || snippet(error.textContent)));
  }
  // TeX left in the prose: delimiters or commands outside code, math and scripts.
  const skip = "pre, code, script, style, textarea, mjx-container, .math, .highlight, .output";
  const tex = /\\\(|\\\[|\$\$|\\begin\{|\\(frac|mathbb|mathrm|operatorname|sqrt|alpha|beta|mu|tau|lambda|sigma|rho|partial|sum|int|cdot|le|ge)(?![a-zA-Z])|(^|[\s(])\$[^$\s][^$]*\$/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) { continue; }
    const match = node.textContent.match(tex);
    if (match) { add(parent, "raw TeX in the text: " + snippet(node.textContent)); }
  }
}"""
