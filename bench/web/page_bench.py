"""bench/web: the page's load time and its memory under live updates, from a real local daemon.

Prints a Markdown section. Load time is from Page.navigate to the page having drawn the daemon's
documents (body[data-loaded]); each load is a fresh navigation (the page is served no-cache).
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


def load_times(browser, url, n=LOADS):
    times, dom = [], []
    browser.navigate(url)  # warm-up: the cookie and the browser's own start-up
    browser.wait_for("document.body.dataset.loaded === 'true'", timeout_s=30)
    for _ in range(n):
        browser.navigate("about:blank")
        start = time.monotonic()
        browser.call("Page.navigate", {"url": url})
        browser.wait_for("document.body && document.body.dataset.loaded === 'true'",
                         timeout_s=30, interval_s=0.005)
        times.append((time.monotonic() - start) * 1000)
        dom.append(browser.evaluate(
            "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"))
    return times, dom


def api_times(daemon, n=LOADS):
    out = []
    for _ in range(n):
        start = time.monotonic()
        for path in ("v1/node", "v1/node/topology", "v1/workloads", "v1/placements",
                     "v1/events?since=0"):
            daemon.call("GET", path)
        out.append((time.monotonic() - start) * 1000)
    return out


def row(name, values):
    return "| %s | %.1f | %.1f | %.1f | %.1f |" % (
        name, statistics.median(values), statistics.mean(values), min(values), max(values))


def memory(browser, gc):
    if gc:
        browser.call("HeapProfiler.collectGarbage")
    m = browser.metrics()
    mem = browser.memory()
    return {"heap": m["JSHeapUsedSize"] / MIB, "nodes": m["Nodes"],
            "renderer": mem["page_renderer_pss"] / MIB,
            "private": mem["page_renderer_private"] / MIB,
            "total": mem["pss_total"] / MIB}


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


def main():
    hostfit, minutes = sys.argv[1], float(sys.argv[2])
    daemon = Daemon(hostfit, "bench")
    try:
        browser = chromium.Browser(memory_limit_bytes=2 << 30, timeout_s=minutes * 60 + 900)
    except chromium.Unavailable as e:
        daemon.close()
        print("## web: the daemon's page in a browser\n\nNot measured: %s\n" % e)
        return
    try:
        browser.set_size(1280, 800)
        blank = memory(browser, gc=True)
        empty_ms, empty_dcl = load_times(browser, daemon.base + "?token=" + TOKEN)
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
        full_ms, full_dcl = load_times(browser, daemon.base)
        full_api = api_times(daemon)
        rows = browser.evaluate("document.querySelectorAll('#workloads tbody tr').length")

        start_mem = memory(browser, gc=True)
        stop, counter = threading.Event(), [0]
        worker = threading.Thread(target=churn, args=(daemon, stop, counter))
        worker.start()
        samples = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < minutes * 60:
            time.sleep(min(60, minutes * 60))
            samples.append((time.monotonic() - t0, memory(browser, gc=False)))
        stop.set()
        worker.join()
        end_nogc = memory(browser, gc=False)
        end_mem = memory(browser, gc=True)
        events = browser.evaluate("window.hostfitPage.since")
        shown = browser.evaluate("document.querySelectorAll('#events li').length")
    finally:
        browser.close()
        daemon.close()

    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    version = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout
    print("## web: the daemon's page in a browser\n")
    print("`hostfit daemon` on this machine with its TCP listener; headless %s driven over the"
          " DevTools pipe (bench/web/page_bench.py), 1280x800, in a 2 GiB memory cgroup."
          % version.strip().split(" built")[0])
    print("Machine: %d CPUs (%s), kernel %s, %s.\n" % (
        os.cpu_count(), cpu, os.uname().release, time.strftime("%Y-%m-%d", time.gmtime())))
    print("### Page load\n")
    print("From `Page.navigate` to the page having drawn the daemon's documents (map, workloads,"
          " events), %d fresh loads each; the same five API reads made with Python's urllib on"
          " the side, without a browser.\n" % LOADS)
    print("| what | median (ms) | mean (ms) | min (ms) | max (ms) |")
    print("|---|---:|---:|---:|---:|")
    print(row("page, 0 workloads", empty_ms))
    print(row("page, 100 workloads (%d rows drawn)" % rows, full_ms))
    print(row("DOMContentLoaded, 100 workloads", full_dcl))
    print(row("API reads only, 0 workloads", empty_api))
    print(row("API reads only, 100 workloads", full_api))
    print("\n### Memory under live updates\n")
    print("100 workloads; a workload created, run and deleted every 2 s (%d cycles, %d events"
          " through the long poll, %d shown) plus the page's own 5 s refresh, for %g minutes."
          " The page's renderer process (the largest; Chromium also keeps a spare): its PSS and"
          " its private memory (Private_Clean + Private_Dirty, what closing the tab frees) from"
          " /proc/PID/smaps_rollup, and PSS of all Chromium's processes; JS heap and DOM nodes"
          " from Performance.getMetrics, after a forced GC unless said.\n" % (
              counter[0], events, shown, minutes))
    print("| when | JS heap (MiB) | DOM nodes | page renderer PSS (MiB) | its private (MiB) |"
          " all Chromium PSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    fmt = "| %s | %.1f | %d | %.1f | %.1f | %.1f |"
    print(fmt % ("about:blank (baseline)", blank["heap"], blank["nodes"], blank["renderer"], blank["private"], blank["total"]))
    print(fmt % ("page loaded, 100 workloads", start_mem["heap"], start_mem["nodes"], start_mem["renderer"], start_mem["private"], start_mem["total"]))
    for t, m in samples[:-1]:
        print(fmt % ("after %.0f min (no GC)" % (t / 60), m["heap"], m["nodes"], m["renderer"], m["private"], m["total"]))
    print(fmt % ("after %g min, no GC" % minutes, end_nogc["heap"], end_nogc["nodes"], end_nogc["renderer"], end_nogc["private"], end_nogc["total"]))
    print(fmt % ("after %g min" % minutes, end_mem["heap"], end_mem["nodes"], end_mem["renderer"], end_mem["private"], end_mem["total"]))
    print("\nWhat the page adds to an empty tab (its renderer's private memory above about:blank's):"
          " %.1f MiB right after loading, %.1f MiB after %g minutes of live updates." % (
              start_mem["private"] - blank["private"], end_mem["private"] - blank["private"],
              minutes))


if __name__ == "__main__":
    main()
