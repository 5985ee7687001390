"""A minimal headless-Chromium driver for the report tests (DevTools protocol, stdlib only).

Chromium is started with ``--remote-debugging-pipe``: the DevTools protocol then runs over
two inherited pipes (fd 3: commands in, fd 4: messages out, each message NUL-terminated
JSON), so no port is opened, nothing can race for one, and no websocket library is needed.

    with Browser() as b:
        page = b.open(Path("report.html"))          # navigates, waits for load, collects events
        page.console_errors, page.network_requests  # what went wrong / what went out
        b.evaluate("document.title")
        png = b.screenshot()

``find_chromium()`` returns the executable or None (tests skip with a message when None).
"""
from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")

# Requests to these schemes stay on the machine; anything else is a network fetch.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


class BrowserError(RuntimeError):
    pass


@dataclass
class PageLoad:
    url: str
    console_errors: list[str] = field(default_factory=list)
    network_requests: list[str] = field(default_factory=list)  # non-local URLs only
    all_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)  # alert()/confirm() opened by the page


class Browser:
    def __init__(self, executable: str | None = None, width: int = 1400, height: int = 1000,
                 timeout: float = 30.0) -> None:
        self.executable = executable or find_chromium()
        if not self.executable:
            raise BrowserError("chromium not found")
        self.width, self.height, self.timeout = width, height, timeout
        self._next_id = 0
        self._responses: dict[int, dict] = {}
        self._events: queue.Queue[dict] = queue.Queue()
        self._cond = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._profile: tempfile.TemporaryDirectory | None = None
        self.session: str | None = None
        self._current: PageLoad | None = None
        self.stderr_tail = ""

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Browser":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        cmd_r, cmd_w = os.pipe()  # we write commands, chromium reads fd 3
        out_r, out_w = os.pipe()  # chromium writes fd 4, we read
        # move the child's ends above 4 first, so that dup2 onto 3 and 4 cannot clobber one another
        hi_cmd_r, hi_out_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
        for fd in (cmd_r, out_w):
            os.close(fd)

        args = [
            self.executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
            f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe",
            f"--window-size={self.width},{self.height}", "about:blank",
        ]
        # bash (sh takes single-digit fds only) puts them on 3 and 4 for chromium; no preexec_fn: tests have threads
        remap = f'exec "$@" 3<&{hi_cmd_r} 4>&{hi_out_w} {hi_cmd_r}<&- {hi_out_w}>&-'
        self._proc = subprocess.Popen(["bash", "-c", remap, "bash", *args], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      pass_fds=(hi_cmd_r, hi_out_w))
        os.close(hi_cmd_r)
        os.close(hi_out_w)
        self._wfile = os.fdopen(cmd_w, "wb", buffering=0)
        self._rfile = os.fdopen(out_r, "rb", buffering=0)
        threading.Thread(target=self._read_loop, daemon=True).start()
        threading.Thread(target=self._stderr_loop, daemon=True).start()

        targets = self.send("Target.getTargets")["targetInfos"]
        pages = [t for t in targets if t.get("type") == "page"]
        target_id = pages[0]["targetId"] if pages else self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target_id, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                self.send("Browser.close", timeout=5)
            except Exception:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            for f in (getattr(self, "_wfile", None), getattr(self, "_rfile", None)):
                try:
                    f and f.close()
                except OSError:
                    pass
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    # ------------------------------------------------------------------ transport
    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._rfile.read(1 << 16)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                with self._cond:
                    self._responses[-1] = {"error": {"message": "chromium closed the pipe"}}
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._responses[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self._events.put(msg)

    def _stderr_loop(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self.stderr_tail = (self.stderr_tail + line.decode(errors="replace"))[-4000:]

    def send(self, method: str, *, session: str | None = None, timeout: float | None = None, **params: Any) -> dict:
        """Send one command and wait for its answer (events keep flowing into the queue)."""
        self._next_id += 1
        mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self._wfile.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while mid not in self._responses:
                if -1 in self._responses:
                    raise BrowserError(f"{method}: chromium exited; stderr: {self.stderr_tail[-1500:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"{method}: no answer within {timeout or self.timeout}s")
                self._cond.wait(left)
            resp = self._responses.pop(mid)
        if "error" in resp:
            raise BrowserError(f"{method}: {resp['error']}")
        return resp.get("result", {})

    def call(self, method: str, **params: Any) -> dict:
        """A command to the attached page."""
        return self.send(method, session=self.session, **params)

    # ------------------------------------------------------------------ events
    def _drain(self, until: str | None = None, timeout: float = 0.0) -> bool:
        """Record queued events; with `until`, wait (up to timeout) for that event. True when seen."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                ev = self._events.get(timeout=max(left, 0.0)) if until else self._events.get_nowait()
            except queue.Empty:
                return False
            self._record(ev)
            if until and ev.get("method") == until and ev.get("sessionId") == self.session:
                return True

    def _record(self, ev: dict) -> None:
        page, method, p = self._current, ev.get("method", ""), ev.get("params", {})
        if page is None or ev.get("sessionId") != self.session:
            return
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            desc = (d.get("exception") or {}).get("description") or d.get("text", "exception")
            page.console_errors.append(f"exception: {desc} ({d.get('url', '')}:{d.get('lineNumber', '')})")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            page.console_errors.append(f"console.{p.get('type')}: {args}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            page.console_errors.append(f"log[{e.get('source')}]: {e.get('text')} {e.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            page.all_requests.append(url)
            if not url.startswith(LOCAL_SCHEMES):
                page.network_requests.append(url)
        elif method == "Page.javascriptDialogOpening":
            page.dialogs.append(p.get("message", ""))
            self.call("Page.handleJavaScriptDialog", accept=False)

    # ------------------------------------------------------------------ page API
    def open(self, target: Path | str, settle: float = 0.5) -> PageLoad:
        """Navigate, wait for the load event, let scripts settle, and return what was observed."""
        url = Path(target).resolve().as_uri() if isinstance(target, Path) else target
        self._drain()
        self._current = page = PageLoad(url)
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"navigation to {url} failed: {result['errorText']}")
        if not self._drain(until="Page.loadEventFired", timeout=self.timeout):
            raise BrowserError(f"{url}: no load event within {self.timeout}s")
        # plotly draws in requestAnimationFrame callbacks: wait two frames, then a little more
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))", await_promise=True)
        self._drain(until="__never__", timeout=settle)
        return page

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in res:
            raise BrowserError(f"evaluate({expression[:80]!r}): {res['exceptionDetails']}")
        self._drain()
        return res.get("result", {}).get("value")

    def screenshot(self, full_page: bool = False) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params |= {"captureBeyondViewport": True,
                       "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        self._drain()
        return data


def png_stats(png: bytes) -> dict[str, Any]:
    """Size, distinct colours and the share of the most common colour of a PNG (needs Pillow)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        rgb = im.convert("RGB")
        small = rgb.resize((max(1, rgb.width // 4), max(1, rgb.height // 4)))
        colors = small.getcolors(maxcolors=1 << 20) or []
        total = small.width * small.height
        top = max((c for c, _ in colors), default=total)
        return {"width": rgb.width, "height": rgb.height, "distinct_colors": len(colors),
                "dominant_share": top / total}
