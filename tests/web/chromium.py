"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe).

The pipe needs no WebSocket client and no chromedriver: Chromium reads NUL-terminated JSON
commands on fd 3 and writes replies and events on fd 4. The browser runs in a memory cgroup of its
own (v1 memory or v2 memory.max), every process of it is killed and the cgroup removed on close,
and every wait has a deadline, because Chromium is a big process on a small shared machine.
"""

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time


class Unavailable(Exception):
    """Chromium cannot run here; the message says why (tests skip with it)."""


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise Unavailable("no chromium on PATH (scripts/install-deps installs Debian's chromium)")


class MemoryCgroup:
    """A memory cgroup with a hard limit, for the browser and its children."""

    def __init__(self, limit_bytes):
        name = "hostfit-webtest-%d" % os.getpid()
        v1 = "/sys/fs/cgroup/memory"
        v2 = "/sys/fs/cgroup"
        if os.path.exists(os.path.join(v1, "memory.limit_in_bytes")):
            self.path = os.path.join(v1, name)
            limit_file = "memory.limit_in_bytes"
        elif "memory" in _read(os.path.join(v2, "cgroup.subtree_control")).split():
            self.path = os.path.join(v2, name)
            limit_file = "memory.max"
        else:
            raise Unavailable("no memory cgroup to bound Chromium in (need cgroup v1 memory or v2 "
                              "with the memory controller enabled at the root)")
        if os.geteuid() != 0:
            raise Unavailable("bounding Chromium's memory needs root (a memory cgroup)")
        os.mkdir(self.path)
        with open(os.path.join(self.path, limit_file), "w") as f:
            f.write(str(limit_bytes))

    def join(self):  # runs in the child between fork and exec
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def pids(self):
        return [int(p) for p in _read(os.path.join(self.path, "cgroup.procs")).split()]

    def usage_bytes(self):
        for f in ("memory.usage_in_bytes", "memory.current"):
            text = _read(os.path.join(self.path, f))
            if text:
                return int(text)
        return None

    def remove(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        try:
            os.rmdir(self.path)
        except OSError:
            time.sleep(0.5)
            os.rmdir(self.path)


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def pss_bytes(pid):
    """Proportional set size of one process (shared pages split among their users)."""
    for line in _read("/proc/%d/smaps_rollup" % pid).splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def private_bytes(pid):
    """Memory only this process holds (Private_Clean + Private_Dirty): what ending it would free."""
    total = 0
    for line in _read("/proc/%d/smaps_rollup" % pid).splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


def process_kind(pid):
    # Chromium's children rewrite their command line as one space-separated string.
    for arg in _read("/proc/%d/cmdline" % pid).replace("\0", " ").split():
        if arg.startswith("--type="):
            return arg[len("--type="):]
    return "browser"


class Browser:
    def __init__(self, memory_limit_bytes=1 << 30, timeout_s=120, width=1280, height=800,
                 disable_features=()):
        self.chromium = find_chromium()
        self.cgroup = MemoryCgroup(memory_limit_bytes)
        self.profile = tempfile.mkdtemp(prefix="hostfit-chromium-")
        self.deadline = time.monotonic() + timeout_s
        self.next_id = 0
        self.events = []
        self.buffer = b""
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()

        def child():
            self.cgroup.join()
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        args = [self.chromium, "--headless", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", "--user-data-dir=" + self.profile, "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                # A page left stays out of the back/forward cache, so the renderers measured
                # are the page's and Chromium's spare, not every page visited.
                "--disable-features=" + ",".join(("BackForwardCache",) + tuple(disable_features)),
                "--window-size=%d,%d" % (width, height), "about:blank"]
        try:
            self.process = subprocess.Popen(args, preexec_fn=child, pass_fds=(3, 4),
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True)
        except Exception:
            self.cgroup.remove()
            raise
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        try:
            self.session = self._attach_page()
        except Exception as e:
            self.close()
            raise Unavailable("chromium started but its DevTools pipe did not answer: %s" % e)

    # ---- the protocol ---------------------------------------------------------------------

    def _send(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        return self.next_id

    def _read_message(self, until):
        while b"\0" not in self.buffer:
            left = until - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from chromium in time")
            ready, _, _ = select.select([self.from_browser], [], [], left)
            if ready:
                chunk = os.read(self.from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe (exit %s)" %
                                       self.process.poll())
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, params=None, session=None, timeout_s=30):
        """Sends one command and returns its result; events that arrive meanwhile are kept."""
        if session is None:
            session = getattr(self, "session", None)
        wanted = self._send(method, params, session)
        until = min(time.monotonic() + timeout_s, self.deadline)
        while True:
            message = self._read_message(until)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError("%s: %s" % (method, message["error"]))
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_event(self, method, timeout_s=30):
        until = min(time.monotonic() + timeout_s, self.deadline)
        while True:
            for i, e in enumerate(self.events):
                if e["method"] == method:
                    return self.events.pop(i)
            message = self._read_message(until)
            if "method" in message:
                self.events.append(message)

    def _attach_page(self):
        targets = self.call("Target.getTargets", session="", timeout_s=30)["targetInfos"]
        pages = [t for t in targets if t["type"] == "page"]
        target = pages[0]["targetId"] if pages else self.call(
            "Target.createTarget", {"url": "about:blank"}, session="")["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                            session="")["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable", "Performance.enable"):
            self.call(domain, session=session)
        return session

    # ---- what tests use -------------------------------------------------------------------

    def set_size(self, width, height, mobile=False):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def navigate(self, url, timeout_s=30):
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise RuntimeError("cannot open %s: %s" % (url, result["errorText"]))
        self.wait_event("Page.loadEventFired", timeout_s)

    def evaluate(self, expression, timeout_s=30):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, timeout_s=timeout_s)
        if "exceptionDetails" in result:
            raise RuntimeError("page script failed: %s" % json.dumps(result["exceptionDetails"]))
        return result["result"].get("value")

    def wait_for(self, expression, timeout_s=10, interval_s=0.05):
        """Polls a page expression until it is truthy; returns (value, seconds waited)."""
        start = time.monotonic()
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # between two documents there is no context to evaluate in
                value = None
            if value:
                return value, time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise TimeoutError("page never satisfied: %s" % expression)
            time.sleep(interval_s)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def console_problems(self):
        """Errors the page logged (CSP violations, exceptions, failed loads), drained."""
        problems = []
        keep = []
        for e in self.events:
            if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error":
                entry = e["params"]["entry"]
                problems.append(entry.get("text", "") + " " + entry.get("url", ""))
            elif e["method"] == "Runtime.exceptionThrown":
                problems.append(json.dumps(e["params"]["exceptionDetails"])[:500])
            else:
                keep.append(e)
        self.events = keep
        return problems

    def metrics(self):
        return {m["name"]: m["value"] for m in self.call("Performance.getMetrics")["metrics"]}

    def renderer_pids(self):
        return sorted(p for p in self.cgroup.pids() if process_kind(p) == "renderer")

    def memory(self):
        """PSS of every process of the browser, by kind, and the cgroup's charge."""
        by_kind, renderers = {}, []
        for pid in self.cgroup.pids():
            kind = process_kind(pid)
            pss = pss_bytes(pid)
            by_kind[kind] = by_kind.get(kind, 0) + pss
            if kind == "renderer":
                renderers.append({"pid": pid, "pss": pss, "private": private_bytes(pid)})
        # The page's renderer is the biggest; the others are spares Chromium keeps warm.
        page = max(renderers, key=lambda r: r["pss"], default={"pss": 0, "private": 0})
        return {"pss_by_kind": by_kind, "pss_total": sum(by_kind.values()),
                "renderers": len(renderers), "page_renderer_pss": page["pss"],
                "page_renderer_private": page["private"],
                "cgroup_usage": self.cgroup.usage_bytes()}

    def close(self):
        try:
            self._send("Browser.close")
            self.process.wait(timeout=5)
        except Exception:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.cgroup.remove()
        for fd in (self.to_browser, self.from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


SKIP = 77  # ctest's SKIP_RETURN_CODE for these tests


def main(test):
    """Runs test(); a Chromium that cannot run here is a skip that says why, not a failure."""
    import sys
    import traceback
    try:
        test()
    except Unavailable as e:
        print("[  SKIPPED ] %s" % e)
        sys.exit(SKIP)
    except Exception:
        traceback.print_exc()
        print("[  FAILED  ]")
        sys.exit(1)
    print("[  PASSED  ]")


def check(condition, what):
    if not condition:
        raise AssertionError(what)
