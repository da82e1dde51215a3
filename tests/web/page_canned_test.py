"""The page against canned daemon documents of a host this machine is not (two packages, four NUMA
nodes, SMT, an offline CPU, a foreign pin, a CPU hostfit may not use): every kind of CPU lands where
the documents put it, OOM kills come first, a new event shows without a reload, the keyboard
reaches the workloads and the NUMA details, and the page logs no error (a CSP violation would).

  page_canned_test.py SERVER DATA.json OUTDIR
"""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium  # noqa: E402
from chromium import check  # noqa: E402

TOKEN = "canned-test-token"


def post_event(base, event):
    request = urllib.request.Request(base + "test/events", data=json.dumps(event).encode(),
                                     method="POST", headers={"Authorization": "Bearer " + TOKEN})
    urllib.request.urlopen(request, timeout=5).read()


def put_document(base, key, doc):
    request = urllib.request.Request(base + "test/documents/" + key, data=json.dumps(doc).encode(),
                                     method="PUT", headers={"Authorization": "Bearer " + TOKEN})
    urllib.request.urlopen(request, timeout=5).read()


def cpus(browser):
    return browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#topology .cpu')].map(c => "
        "[c.dataset.cpu, c.dataset.holderKind + ':' + c.dataset.holder]))")


def test():
    server_bin, data, outdir = sys.argv[1:4]
    os.makedirs(outdir, exist_ok=True)
    server = subprocess.Popen([server_bin, data, TOKEN], stdout=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().strip()
        check(base.startswith("http://127.0.0.1:"), "server did not start: %r" % base)
        # Without the token the TCP listener gives nothing away, the page included.
        for path in ("", "ui/hostfit.js", "v1/workloads"):
            try:
                urllib.request.urlopen(base + path, timeout=5)
                check(False, "GET /%s without the token was answered" % path)
            except urllib.error.HTTPError as e:
                check(e.code == 401, "GET /%s without the token: %d, not 401" % (path, e.code))
        with chromium.Browser(memory_limit_bytes=1 << 30, timeout_s=120) as browser:
            browser.set_size(1280, 800)
            browser.navigate(base)
            check(browser.evaluate("document.body.innerText").find("token") >= 0,
                  "the page without the token should show only the 401 error")
            check(browser.evaluate("document.getElementById('topology') === null"),
                  "the page rendered without the token")
            browser.navigate(base + "?token=" + TOKEN)
            check(browser.evaluate("location.search") == "", "the token stayed in the address bar")
            browser.wait_for("document.body.dataset.loaded === 'true'")
            held = cpus(browser)
            expected = {"0": "disallowed:not allowed to hostfit", "1": "free:",
                        "2": "workload:etl", "10": "workload:etl",
                        "4": "workload:gateway", "5": "workload:gateway",
                        "6": "foreign:(/docker/abc)", "15": "offline:offline", "14": "free:"}
            for cpu, want in expected.items():
                check(held.get(cpu) == want, "CPU %s: %s, expected %s" % (cpu, held.get(cpu), want))
            # CPUs sit under their NUMA node and package.
            where = browser.evaluate(
                "[...document.querySelectorAll('.cpu')].filter(c => c.closest('.numa'))"
                ".map(c => c.dataset.cpu + '@' + c.closest('.numa').dataset.node + '/' +"
                " c.closest('.package').dataset.package)")
            for item in ("2@1/0", "10@1/0", "4@2/1", "0@0/0"):
                check(item in where, "%s not in place: %s" % (item, where))
            rows = browser.evaluate(
                "[...document.querySelectorAll('#workloads tbody tr')]"
                ".map(r => r.dataset.workload + ':' + r.dataset.state)")
            check(rows == ["etl:RUNNING", "gateway:RUNNING", "hog:STOPPED"], "rows: %s" % rows)
            first = browser.evaluate("document.querySelector('#events li').dataset.kind + ' ' + "
                                     "document.querySelector('#events li').innerText")
            check(first.startswith("oom") and "killed by the kernel OOM killer" in first,
                  "first event: %s" % first)
            colour = browser.evaluate(
                "getComputedStyle(document.querySelector('#events li.oom')).color")
            check(colour == "rgb(180, 35, 24)", "OOM event colour: %s" % colour)
            # CPU use of quota: no use until the counter has been read twice; "—" without it.
            cpu = browser.evaluate(
                "Object.fromEntries([...document.querySelectorAll('#workloads tbody tr')].map(r =>"
                " [r.dataset.workload, r.querySelector('.cpu-use .cell').firstChild.textContent]))")
            # (etl's unchanged counter reads 0.00 once a second read came, on a slow machine.)
            check(cpu["etl"] in ("— of 2", "0.00 of 2") and cpu["gateway"] == "— of 1.5" and
                  cpu["hog"] == "— of 1", "CPU: %s" % cpu)
            # Engines and sessions: the dead engine and its failed session with the verdict.
            engines = browser.evaluate(
                "[...document.querySelectorAll('#engines tbody tr')].map(r =>"
                " r.dataset.engine + ':' + r.dataset.state + ':' + r.querySelector('.verdict').innerText)")
            check(len(engines) == 2 and engines[0].startswith("pg-1:ENDED:KILLED(OOM)") and
                  engines[1] == "pg-2:READY:—", "engines: %s" % engines)
            sessions = browser.evaluate(
                "[...document.querySelectorAll('#sessions tbody tr')].map(r =>"
                " r.dataset.session + ':' + r.dataset.state + ':' + r.dataset.engine)")
            check(sessions == ["s-0b1c2d3e4f506172:OPEN:pg-2", "s-9f3c1d2e8a7b6c50:FAILED:pg-1"],
                  "sessions: %s" % sessions)
            browser.screenshot(os.path.join(outdir, "canned-1280x800.png"))

            # Live: an event posted now shows without a reload (the marker would not survive one).
            browser.evaluate("window.notReloaded = true")
            posted = time.monotonic()
            post_event(base, {"type": "oom.kill", "workload": "etl", "time": "2026-11-29T17:05:00Z",
                              "message": "'etl' was killed by the kernel OOM killer"})
            _, waited = browser.wait_for(
                "document.querySelector('#events li.oom[data-workload=\"etl\"]') !== null",
                timeout_s=5)
            check(browser.evaluate("window.notReloaded === true"), "the page reloaded")
            print("live event shown %.0f ms after it was posted" % ((time.monotonic() - posted) * 1000))
            # CPU use: etl's counter grows by 3 CPU-seconds; the next read shows the rate since
            # the one before, in CPUs of its quota of 2.
            time.sleep(2.5)
            with open(data) as f:
                workloads = json.load(f)["workloads"]
            workloads["workloads"][0]["cpu"]["usage_usec"] += 3000000
            put_document(base, "workloads", workloads)
            post_event(base, {"type": "run.note", "workload": "etl", "message": "counter moved"})
            cell = "document.querySelector('tr[data-workload=\"etl\"] .cpu-use .cell').firstChild.textContent"
            text, _ = browser.wait_for("/^\\d+\\.\\d\\d of 2$/.test(%s) && %s" % (cell, cell),
                                       timeout_s=10)
            check(0.2 < float(text.split()[0]) < 3.0, "etl's CPU use: %r" % text)
            print("etl's CPU use after 3 CPU-seconds: %s" % text)
            # A session's failure shows from its event alone (the canned documents never change).
            post_event(base, {"type": "session.failed", "workload": "s-0b1c2d3e4f506172",
                              "time": "2026-11-29T17:06:00Z",
                              "message": "session s-0b1c2d3e4f506172 failed: engine 'pg-2' ended",
                              "data": {"engine": "pg-2", "key": "pg/user/alice/default",
                                       "verdict": {"verdict": "KILLED(SIGNAL 9)"}}})
            browser.wait_for("(() => { const r = document.querySelector("
                             "'#sessions tr[data-session=\"s-0b1c2d3e4f506172\"]');"
                             " return r && r.dataset.state === 'FAILED' &&"
                             " r.innerText.includes('KILLED(SIGNAL 9)'); })()", timeout_s=5)

            # Keyboard: Tab reaches a NUMA node, whose details then show; Enter on a workload row
            # emphasises its CPUs.
            browser.evaluate("document.querySelector('.numa[data-node=\"2\"]').focus()")
            shown = browser.evaluate("getComputedStyle(document.querySelector("
                                     "'.numa[data-node=\"2\"] .numa-info')).display")
            check(shown == "block", "NUMA details on focus: display %s" % shown)
            info = browser.evaluate("document.querySelector('.numa[data-node=\"2\"] .numa-info')"
                                    ".innerText")
            check("8.0 GiB" in info and "21" in info, "NUMA details: %r" % info)
            browser.evaluate("document.querySelector('tr[data-workload=\"gateway\"]').focus()")
            browser.call("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Enter",
                                                    "code": "Enter", "windowsVirtualKeyCode": 13})
            browser.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Enter",
                                                    "code": "Enter", "windowsVirtualKeyCode": 13})
            dimmed = browser.evaluate("[...document.querySelectorAll('#topology .cpu.dim')].length")
            bright = browser.evaluate("[...document.querySelectorAll('#topology .cpu:not(.dim)')]"
                                      ".map(c => c.dataset.cpu).sort()")
            check(bright == ["4", "5"] and dimmed > 0, "highlighted CPUs: %s" % bright)
            focused = browser.evaluate("document.activeElement.dataset.workload")
            check(focused == "gateway", "focus after Enter: %s" % focused)

            # Tab alone walks the page: the NUMA nodes, every workload row and the events list
            # (a scrolling box) take the focus, in the order they are shown, each visibly.
            browser.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
            reached = []
            for _ in range(14):
                browser.call("Input.dispatchKeyEvent", {"type": "rawKeyDown", "key": "Tab",
                                                        "code": "Tab", "windowsVirtualKeyCode": 9})
                browser.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Tab",
                                                        "code": "Tab", "windowsVirtualKeyCode": 9})
                reached.append(browser.evaluate(
                    "(() => { const a = document.activeElement; return [a.id || a.dataset.node ||"
                    " a.dataset.workload || a.tagName, getComputedStyle(a).outlineStyle]; })()"))
            names = [r[0] for r in reached]
            for want in ("0", "1", "2", "3", "etl", "gateway", "hog", "events"):
                check(want in names, "Tab never reaches %s: %s" % (want, names))
            check(all(r[1] != "none" for r in reached if r[0] in ("etl", "events", "2")),
                  "focus without a visible outline: %s" % reached)

            # Without colour: every held CPU carries a text label too.
            labels = browser.evaluate(
                "[...document.querySelectorAll('.cpu[data-holder-kind=\"workload\"] .who')]"
                ".map(w => w.textContent)")
            check(labels and all(labels), "held CPUs without a label: %s" % labels)

            browser.set_size(390, 844, mobile=True)
            overflow = browser.evaluate("document.documentElement.scrollWidth")
            check(overflow <= 390, "the page is %d px wide on a 390 px screen" % overflow)
            browser.screenshot(os.path.join(outdir, "canned-390x844.png"))
            # The 401s of the visit before signing in (the page, and /favicon.ico, which the
            # error page makes Chromium ask for) may be logged late; nothing else may be.
            before = (" " + base, " " + base + "favicon.ico")
            problems = [p for p in browser.console_problems() if not p.endswith(before)]
            check(not problems, "the page logged errors: %s" % problems)
            print("screenshots in %s" % outdir)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    chromium.main(test)
