"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``.

Chromium reads protocol messages (JSON, each ended by a NUL byte) from its file
descriptor 3 and writes replies and events to descriptor 4. No port is opened, so nothing
listens on the network, and no websocket library is needed. One page, one session:

    with HeadlessChromium(binary) as browser:
        page = browser.open_page(1280, 900)
        page.navigate("file:///tmp/report.html")
        print(page.evaluate("document.title"), page.errors)
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

TIMEOUT_S = 60.0


class ProtocolError(RuntimeError):
    """The browser answered a command with an error, or did not answer in time."""


class HeadlessChromium:
    """A headless Chromium process driven over its debugging pipe."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self._profile = tempfile.TemporaryDirectory(prefix="surge-chromium-")
        self._next_id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._process: subprocess.Popen[bytes] | None = None
        self._to_browser = -1
        self._reader: threading.Thread | None = None

    def __enter__(self) -> HeadlessChromium:
        commands_read, commands_write = os.pipe()
        replies_read, replies_write = os.pipe()
        # Above 4, so that moving them onto 3 and 4 in the child cannot overwrite either.
        child_read = fcntl.fcntl(commands_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_write = fcntl.fcntl(replies_write, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(commands_read)
        os.close(replies_write)
        commands_read, replies_write = child_read, child_write
        flags = [
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",  # the test machine runs as root, where the sandbox refuses
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={self._profile.name}",
            "about:blank",
        ]

        def onto_3_and_4() -> None:  # in the child, before exec: dup2 targets are inherited
            os.dup2(commands_read, 3)
            os.dup2(replies_write, 4)

        self._process = subprocess.Popen(
            [str(self.binary), *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,  # every other descriptor here is close-on-exec already
            preexec_fn=onto_3_and_4,  # noqa: PLW1509 (no threads yet: the reader starts below)
        )
        os.close(commands_read)
        os.close(replies_write)
        self._to_browser = commands_write
        self._reader = threading.Thread(target=self._read, args=(replies_read,), daemon=True)
        self._reader.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with contextlib.suppress(ProtocolError, OSError):
            self.send("Browser.close", timeout=10)
        if self._process is not None:
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=15)
        if self._to_browser >= 0:
            os.close(self._to_browser)
            self._to_browser = -1
        self._profile.cleanup()

    def _read(self, descriptor: int) -> None:
        buffer = b""
        with os.fdopen(descriptor, "rb", buffering=0) as stream:
            while True:
                chunk = stream.read(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\0" in buffer:
                    raw, buffer = buffer.split(b"\0", 1)
                    message = json.loads(raw)
                    if "id" in message:
                        with self._lock:
                            waiting = self._replies.get(message["id"])
                        if waiting is not None:
                            waiting.put(message)
                    else:
                        self.events.put(message)

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply's ``result``."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            reply: queue.Queue[dict[str, Any]] = queue.Queue()
            self._replies[ident] = reply
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        try:
            answer = reply.get(timeout=timeout)
        except queue.Empty:
            raise ProtocolError(f"{method}: no answer within {timeout} s") from None
        finally:
            with self._lock:
                self._replies.pop(ident, None)
        if "error" in answer:
            raise ProtocolError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def open_page(self, width: int, height: int) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page


class Page:
    """One attached page: commands in its session, console errors collected."""

    def __init__(self, browser: HeadlessChromium, session: str) -> None:
        self.browser = browser
        self.session = session
        #: console errors, uncaught exceptions and failed loads seen on this page
        self.errors: list[str] = []

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def _take(self, event: dict[str, Any]) -> None:
        if event.get("sessionId") != self.session:
            return
        before = len(self.errors)
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            words = [str(arg.get("value", arg.get("description", ""))) for arg in params["args"]]
            self.errors.append(f"console.{params['type']}: {' '.join(words)}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log ({entry.get('source')}): {entry.get('text')}")
        # a data: URL can be megabytes long: keep messages short enough to read
        self.errors[before:] = [error[:300] for error in self.errors[before:]]

    def wait_for(self, method: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """Collect events until ``method`` arrives for this page."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError(f"no {method} within {timeout} s")
            try:
                event = self.browser.events.get(timeout=left)
            except queue.Empty:
                continue
            self._take(event)
            if event.get("sessionId") == self.session and event["method"] == method:
                return event

    def drain(self) -> None:
        """Take every event already received (late console errors)."""
        while True:
            try:
                self._take(self.browser.events.get_nowait())
            except queue.Empty:
                return

    def navigate(self, url: str) -> None:
        answer = self.send("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise ProtocolError(f"navigating to {url}: {answer['errorText']}")
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` (awaited when it is a promise)."""
        answer = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise ProtocolError(f"evaluating {expression[:60]!r}: {text}")
        self.drain()
        return answer["result"].get("value")

    def screenshot(self, path: Path, height: int | None = None) -> None:
        """A PNG of the page from the top: ``height`` CSS pixels of it, or all of it."""
        metrics = self.send("Page.getLayoutMetrics")["cssContentSize"]
        width = metrics["width"]
        tall = metrics["height"] if height is None else min(height, metrics["height"])
        data = self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": tall, "scale": 1},
            },
        )["data"]
        path.write_bytes(base64.b64decode(data))


def main(argv: list[str]) -> int:
    """``python tests/browser/cdp_pipe.py PAGE.html OUT.png [HEIGHT]``: a screenshot."""
    import surge_browser_tools

    page_path, out = Path(argv[0]).resolve(), Path(argv[1])
    height = int(argv[2]) if len(argv) > 2 else None
    with HeadlessChromium(surge_browser_tools.ensure_chromium()) as browser:
        page = browser.open_page(1280, 900)
        page.navigate(page_path.as_uri())
        page.evaluate("Promise.all(Array.from(document.images).map(i => i.decode()))")
        page.screenshot(out, height)
        for error in page.errors:
            print(f"page error: {error}", file=sys.stderr)
    return 1 if page.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
