"""Open a page in headless Chromium and look at it: images decoded, console errors, a screenshot.

Talks the Chrome DevTools protocol over `--remote-debugging-pipe` (JSON messages ending in
a NUL byte on file descriptors 3 and 4), so it needs no Python package and no network port.
Used by the report's browser test and to take the README's screenshot:

    check = inspect_page("runs/compare/report.html", screenshot="report.png")
    check["images"]          # [{"src": ..., "alt": ..., "naturalWidth": ...}, ...]
    check["errors"]          # console errors, uncaught exceptions, failed loads
    check["table_rows"]      # row headers of the metrics table
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from ..errors import GenlabError

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe"]

_PROBE = """JSON.stringify({
  images: Array.from(document.images).map(i => ({src: i.src.slice(0, 40), alt: i.alt,
                                                  complete: i.complete, naturalWidth: i.naturalWidth})),
  table_rows: Array.from(document.querySelectorAll('table#metrics tbody th[scope=row]'))
                   .map(th => th.textContent.trim()),
  title: document.title,
  height: Math.ceil(document.documentElement.scrollHeight),
})"""


def find_chromium() -> Optional[str]:
    """Path of a Chromium / Chrome executable ($GENLAB_CHROMIUM first), or None."""
    for name in (os.environ.get("GENLAB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class _Pipe:
    """A Chromium process and its DevTools pipe; `call` sends one command and waits for its answer."""

    def __init__(self, exe: str, profile: str, timeout: float):
        self.timeout, self.next_id, self.events = timeout, 0, []
        import fcntl

        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # the child's ends, moved above 10 so that placing them on 3 and 4 cannot clobber one another
        a, b = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        # chromium reads commands on fd 3 and writes answers on fd 4; bash puts them there
        # (dash's redirections take one-digit fds only)
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{a} 4>&{b} {a}<&- {b}>&-',
             exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(a, b), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(a)
        os.close(b)
        self._buf = b""

    def _read_message(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GenlabError("chromium did not answer in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise GenlabError("chromium closed the DevTools pipe")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: Optional[str] = None, **params) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise GenlabError(f"chromium: {method}: {m['error'].get('message')}")
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._read_message(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def close(self):
        try:
            os.write(self._w, json.dumps({"id": 0, "method": "Browser.close", "params": {}}).encode() + b"\0")
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


def _errors(events: list) -> list[str]:
    out = []
    for m in events:
        p = m.get("params", {})
        if m.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif m.get("method") == "Runtime.exceptionThrown":
            out.append("exception: " + p["exceptionDetails"].get("text", ""))
        elif m.get("method") == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        elif m.get("method") == "Network.loadingFailed":
            out.append(f"network: {p.get('errorText')}")
    return out


def inspect_page(html, screenshot=None, width: int = 1200, timeout: float = 60.0,
                 executable: Optional[str] = None) -> dict:
    """Load `html` (a file) in headless Chromium; return images, table rows, errors; save a
    full-page PNG screenshot to `screenshot` if given."""
    exe = executable or find_chromium()
    if exe is None:
        raise GenlabError("no chromium found (apt-get install chromium, or set GENLAB_CHROMIUM)")
    url = Path(html).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="genlab-chromium-") as profile:
        pipe = _Pipe(exe, profile, timeout)
        try:
            target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
            s = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session=s)
            pipe.call("Emulation.setDeviceMetricsOverride", session=s, width=width, height=900,
                      deviceScaleFactor=1, mobile=False)
            pipe.events.clear()
            pipe.call("Page.navigate", session=s, url=url)
            pipe.wait_for("Page.loadEventFired")
            probe = json.loads(pipe.call("Runtime.evaluate", session=s, expression=_PROBE,
                                         returnByValue=True)["result"]["value"])
            if screenshot is not None:
                height = min(int(probe["height"]), 16000)
                pipe.call("Emulation.setDeviceMetricsOverride", session=s, width=width, height=height,
                          deviceScaleFactor=1, mobile=False)
                png = pipe.call("Page.captureScreenshot", session=s, format="png")["data"]
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                Path(screenshot).write_bytes(base64.b64decode(png))
            probe["errors"] = _errors(pipe.events)
        finally:
            pipe.close()
    return probe
