"""Drive headless Chromium through the DevTools protocol over a pipe: no driver, no websocket library.

    python scripts/browser.py PAGE.html SHOT.png [--hash 'a=aecodec&b=jpeg&zoom=2'] [--size 1100x760]

writes a screenshot of the page (how docs/compare.png is made). ``tests/test_compare.py`` uses ``Browser``
to check, as a person would, that every image of an ``aecodec compare`` page loads and that the slider moves.

Chromium's ``--remote-debugging-pipe`` reads JSON commands, each ended by a NUL byte, on its descriptor 3
and writes replies and events on descriptor 4.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

#: Debian's package installs ``chromium``; other systems name it otherwise.
BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, BINARIES) if p), None)


class Browser:
    """One headless Chromium with one page, commanded over the DevTools pipe."""

    def __init__(self, binary: str, width: int = 1100, height: int = 760, timeout: float = 60.0) -> None:
        self.timeout, self.next_id, self.buffer, self.session = timeout, 0, b"", None
        self.profile = tempfile.TemporaryDirectory(prefix="aecodec-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def child_fds() -> None:  # move the pipe ends to 3 and 4 without clobbering either on the way
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (to_chrome_r, from_chrome_w)]
            for target, fd in zip((3, 4), high, strict=True):
                os.dup2(fd, target)

        args = [binary, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu"]
        args += ["--no-first-run", "--disable-extensions", f"--user-data-dir={self.profile.name}", "about:blank"]
        self.proc = subprocess.Popen(
            args, pass_fds=(3, 4), preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.send("Page.enable")

    def _read(self) -> dict:
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.from_chrome], [], [], self.timeout)
            chunk = os.read(self.from_chrome, 1 << 20) if ready else b""
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe or did not answer in time")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, **params) -> dict:
        """Run one command and return its result (events that arrive meanwhile are dropped)."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url: str) -> None:
        """Navigate and wait until the page's load event (every data: image decoded or failed)."""
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.evaluate("document.readyState") == "complete":
                return
            time.sleep(0.05)
        raise RuntimeError(f"{url} did not finish loading")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A left click with the mouse, as a person makes it (press, then release)."""
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_chrome)
        os.close(self.from_chrome)
        self.profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("shot", type=Path)
    parser.add_argument("--hash", default="", help="The page state after #, e.g. a=aecodec&b=jpeg&zoom=2.")
    parser.add_argument("--size", default="1100x760", help="Viewport WIDTHxHEIGHT.")
    args = parser.parse_args()
    binary = find_chromium()
    if binary is None:
        raise SystemExit(f"no Chromium found (looked for {', '.join(BINARIES)}); on Debian: apt-get install chromium")
    width, height = (int(v) for v in args.size.split("x"))
    with Browser(binary, width, height) as browser:
        browser.open(args.page.resolve().as_uri() + (f"#{args.hash}" if args.hash else ""))
        args.shot.write_bytes(browser.screenshot())
    print(f"wrote {args.shot}")


if __name__ == "__main__":
    main()
