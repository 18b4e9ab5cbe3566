"""A small Chrome DevTools Protocol client over --remote-debugging-pipe (no extra dependencies):
open a page in headless Chromium, evaluate scripts in it, and collect its console errors."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class Chromium:
    """Headless Chromium driven through the DevTools pipe (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, timeout: float = 60.0):
        binary = chromium_path()
        if binary is None:
            raise FileNotFoundError("Chromium is not installed: apt-get install -y chromium "
                                    "(or deselect the browser tests with -m 'not browser').")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="sct-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes():  # in the child: the pipe ends become fds 3 and 4, inheritable
            os.dup2(to_browser_r, 100)
            os.dup2(from_browser_w, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        preexec_fn=wire_pipes, close_fds=False, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.messages: list[dict] = []  # every event received
        self._pending: list[dict] = []

    def _read(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("Chromium did not answer in time.")
        ready, _, _ = select.select([self._from_browser], [], [], remaining)
        if not ready:
            raise TimeoutError("Chromium did not answer in time.")
        chunk = os.read(self._from_browser, 1 << 20)
        if not chunk:
            raise ConnectionError(f"Chromium closed the pipe (exit code {self.process.poll()}).")
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\0")
        for raw in complete:
            message = json.loads(raw)
            self._pending.append(message)
            if "method" in message:
                self.messages.append(message)

    def wait_for(self, predicate, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for message in self._pending:
                if predicate(message):
                    self._pending.remove(message)
                    return message
            self._read(deadline)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        number = self._next_id
        reply = self.wait_for(lambda m: m.get("id") == number)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str) -> str:
        """Open ``url`` in a new tab, wait for its load event; returns the session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session)
        return session

    def evaluate(self, session: str, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"Script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self, session: str) -> list[str]:
        """Uncaught exceptions, console.error calls and error log entries (failed loads) of the page."""
        # drain what has arrived
        try:
            self.wait_for(lambda m: False, timeout=0.3)
        except TimeoutError:
            pass
        found = []
        for message in self.messages:
            if message.get("sessionId") != session:
                continue
            method, params = message["method"], message.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("exception", {}).get("description") or
                             params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", "log error"))
        return found

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (ConnectionError, TimeoutError, OSError, RuntimeError):
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
