"""bench/web: the page's load time and its memory under live updates, from a real local daemon.

Prints a Markdown section. Each load is a fresh navigation (the page is served no-cache) from
about:blank. The page marks its own progress (performance.mark 'hostfit:documents' when the
daemon's documents are in, 'hostfit:drawn' when map, workloads, sessions and events are drawn),
so the page's own time is told apart from the daemon's answers (Resource Timing of its requests).
Memory: the page's renderer beside an about:blank tab's renderer in the same browser (no spare
renderer, so the blank tab's process is the one that appears when it opens).
"""
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "web"))
import chromium  # noqa: E402
from daemon_page_test import TOKEN, Daemon  # noqa: E402

LOADS = 15
MIB = 1 << 20

TIMINGS = """(() => {
  const n = performance.getEntriesByType('navigation')[0];
  const mark = (name) => performance.getEntriesByName(name)[0]?.startTime;
  const api = performance.getEntriesByType('resource').filter((e) => new URL(e.name).pathname.startsWith('/v1/'));
  return {dcl: n.domContentLoadedEventEnd, documents: mark('hostfit:documents'), drawn: mark('hostfit:drawn'),
          script: mark('hostfit:script'), asked: Math.min(...api.map((e) => e.startTime)),
          answer: Math.max(...api.map((e) => e.responseEnd - e.requestStart))};
})()"""


def load_times(browser, url, n=LOADS):
    browser.navigate(url)  # warm-up: the cookie and the browser's own start-up
    browser.wait_for("document.body.dataset.loaded === 'true'", timeout_s=30)
    out = []
    for _ in range(n):
        browser.navigate("about:blank")
        start = time.monotonic()
        browser.call("Page.navigate", {"url": url})
        browser.wait_for("document.body && document.body.dataset.loaded === 'true'",
                         timeout_s=30, interval_s=0.02)
        t = browser.evaluate(TIMINGS)
        t["wall"] = (time.monotonic() - start) * 1000
        t["own"] = t["drawn"] - t["documents"]
        out.append(t)
    return out


def api_times(daemon, n=LOADS):
    out = []
    for _ in range(n):
        start = time.monotonic()
        for path in ("v1/node", "v1/node/topology", "v1/workloads", "v1/placements",
                     "v1/events?since=0&wait=0", "v1/engines", "v1/sessions"):
            daemon.call("GET", path)
        out.append((time.monotonic() - start) * 1000)
    return out


def row(name, values):
    return "| %s | %.1f | %.1f | %.1f | %.1f |" % (
        name, statistics.median(values), statistics.mean(values), min(values), max(values))


def rss(pid):
    return {"pss": chromium.pss_bytes(pid) / MIB, "private": chromium.private_bytes(pid) / MIB}


class Tabs:
    """The page's tab (the browser's first) and an about:blank tab opened beside it."""

    def __init__(self, browser):
        self.browser = browser
        before = set(browser.renderer_pids())
        browser.call("Target.createTarget", {"url": "about:blank"}, session="")
        deadline = time.monotonic() + 10
        new = set()
        while time.monotonic() < deadline and len(new) != 1:
            time.sleep(0.2)
            new = set(browser.renderer_pids()) - before
        self.blank = new.pop() if len(new) == 1 else None

    def page_pid(self):
        others = [p for p in self.browser.renderer_pids() if p != self.blank]
        return max(others, key=chromium.pss_bytes)

    def memory(self, gc):
        if gc:
            self.browser.call("HeapProfiler.collectGarbage")
        m = self.browser.metrics()
        page = rss(self.page_pid())
        blank = rss(self.blank) if self.blank else {"pss": float("nan"), "private": float("nan")}
        return {"heap": m["JSHeapUsedSize"] / MIB, "nodes": m["Nodes"],
                "listeners": m["JSEventListeners"], "page": page, "blank": blank,
                "total": self.browser.memory()["pss_total"] / MIB}


def churn(daemon, stop, counter):
    """A workload created, started, ended and deleted every 2 s: events for the long poll."""
    i = 0
    while not stop.is_set():
        name = "churn-%d" % (i % 2)
        try:
            daemon.call("POST", "v1/workloads", {"name": name, "argv": ["sleep", "1"],
                                                 "memory": "16Mi"})
            stop.wait(1.5)
            daemon.call("DELETE", "v1/workloads/%s?force=1" % name)
            counter[0] += 1
        except Exception:
            stop.wait(0.5)
        i += 1
        stop.wait(0.5)


def load_table(title, runs):
    print(row("%s: Page.navigate → drawn, seen from outside (polled every 20 ms)" % title,
              [t["wall"] for t in runs]))
    print(row("%s: **navigation start → drawn** (in the page)" % title, [t["drawn"] for t in runs]))
    print(row("%s: navigation start → DOMContentLoaded" % title, [t["dcl"] for t in runs]))
    print(row("%s: navigation start → documents asked (preloads)" % title, [t["asked"] for t in runs]))
    print(row("%s: navigation start → all documents in" % title, [t["documents"] for t in runs]))
    print(row("%s: slowest document, request → response end (the daemon)" % title,
              [t["answer"] for t in runs]))
    print(row("%s: the page's own draw (documents in → drawn)" % title, [t["own"] for t in runs]))


def main():
    hostfit, minutes = sys.argv[1], float(sys.argv[2])
    daemon = Daemon(hostfit, "bench")
    try:
        browser = chromium.Browser(memory_limit_bytes=2 << 30, timeout_s=minutes * 60 + 900,
                                   disable_features=("SpareRendererForSitePerProcess",))
    except chromium.Unavailable as e:
        daemon.close()
        print("## web: the daemon's page in a browser\n\nNot measured: %s\n" % e)
        return
    try:
        browser.set_size(1280, 800)
        empty = load_times(browser, daemon.base + "?token=" + TOKEN)
        empty_api = api_times(daemon)
        for i in range(100):
            daemon.call("POST", "v1/workloads", {"name": "w%03d" % i, "argv": ["sleep", "100000"],
                                                 "memory": "32Mi", "cpus": 0.01})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [w["state"] for w in daemon.call("GET", "v1/workloads")["workloads"]]
            if states.count("RUNNING") == 100:
                break
            time.sleep(0.2)
        full = load_times(browser, daemon.base)
        full_api = api_times(daemon)
        rows = browser.evaluate("document.querySelectorAll('#workloads tbody tr').length")

        tabs = Tabs(browser)
        time.sleep(2)
        start_mem = tabs.memory(gc=True)
        stop, counter = threading.Event(), [0]
        worker = threading.Thread(target=churn, args=(daemon, stop, counter))
        worker.start()
        samples = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < minutes * 60:
            time.sleep(min(60, minutes * 60))
            samples.append((time.monotonic() - t0, tabs.memory(gc=False)))
        stop.set()
        worker.join()
        end_nogc = tabs.memory(gc=False)
        end_mem = tabs.memory(gc=True)
        events = browser.evaluate("window.hostfitPage.since")
        shown = browser.evaluate("document.querySelectorAll('#events li').length")
        points = browser.evaluate("Math.max(...[...window.hostfitPage.samples.values()].map(s => s.length))")
    finally:
        browser.close()
        daemon.close()

    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    version = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout
    load = os.getloadavg()
    print("## web: the daemon's page in a browser\n")
    print("`hostfit daemon` on this machine with its TCP listener; headless %s driven over the"
          " DevTools pipe (bench/web/page_bench.py), 1280x800, in a 2 GiB memory cgroup."
          % version.strip().split(" built")[0])
    print("Machine: %d CPUs (%s), kernel %s, %s; load average %.1f at the end (the machine is"
          " shared).\n" % (os.cpu_count(), cpu, os.uname().release,
                           time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load[0]))
    print("### Page load\n")
    print("%d fresh loads each, from about:blank. \"Drawn\" is the page's own mark after the map,"
          " the workload rows (%d with 100 workloads), engines, sessions and events are in the"
          " DOM; \"navigation start\" is the new document's time origin (Chromium starts its"
          " renderer before it, which the outside view includes). The daemon's time is the"
          " slowest of the page's seven requests; the same seven reads made one after another"
          " with Python's urllib, without a browser, are the last rows.\n" % (LOADS, rows))
    print("| what | median (ms) | mean (ms) | min (ms) | max (ms) |")
    print("|---|---:|---:|---:|---:|")
    load_table("0 workloads", empty)
    load_table("100 workloads", full)
    print(row("API reads only, one after another, 0 workloads", empty_api))
    print(row("API reads only, one after another, 100 workloads", full_api))
    print("\n### Memory under live updates\n")
    print("100 workloads; a workload created, run and deleted every 2 s (%d cycles, %d events"
          " through the long poll, %d shown, at most %d sparkline points per workload) plus the"
          " page's own 5 s refresh, for %g minutes. Renderer memory from /proc/PID/smaps_rollup:"
          " PSS, and private (Private_Clean + Private_Dirty, what closing the tab frees), for the"
          " page's renderer and for an about:blank tab's renderer opened beside it in the same"
          " browser; JS heap (JSHeapUsedSize), DOM nodes and JS event listeners from"
          " Performance.getMetrics of the page, after a forced GC (HeapProfiler.collectGarbage)"
          " unless said.\n" % (counter[0], events, shown, points, minutes))
    print("| when | JS heap (MiB) | DOM nodes | JS listeners | page renderer PSS (MiB) |"
          " its private (MiB) | about:blank renderer PSS (MiB) | its private (MiB) |"
          " page − blank private (MiB) | all Chromium PSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def line(name, m):
        print("| %s | %.1f | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |" % (
            name, m["heap"], m["nodes"], m["listeners"], m["page"]["pss"], m["page"]["private"],
            m["blank"]["pss"], m["blank"]["private"],
            m["page"]["private"] - m["blank"]["private"], m["total"]))
    line("page loaded, 100 workloads", start_mem)
    for t, m in samples[:-1]:
        line("after %.0f min (no GC)" % (t / 60), m)
    line("after %g min, no GC" % minutes, end_nogc)
    line("after %g min" % minutes, end_mem)


if __name__ == "__main__":
    main()
