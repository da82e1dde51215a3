"""The page's engines and sessions against a real `hostfit daemon`, in headless Chromium.

An engine template of the sessions tests' small engine (tests/sessions/test_engine.cc), a session
opened while the page watches: the page shows the engine READY and the session OPEN on it. Then
the engine process is killed with SIGKILL, and without a reload the session shows FAILED with the
engine's verdict, KILLED(SIGNAL 9), and the engine ENDED. Screenshots at 1280x800 and 390x844 go
to OUTDIR.

  sessions_page_test.py HOSTFIT TEST_ENGINE OUTDIR
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium  # noqa: E402
from chromium import check  # noqa: E402
from daemon_page_test import TOKEN, Daemon  # noqa: E402


def row(browser, table, key, value):
    return browser.evaluate(
        "(() => { const r = document.querySelector('#%s tbody tr[data-%s=\"%s\"]');"
        " return r && {state: r.dataset.state, engine: r.dataset.engine || null,"
        " text: r.innerText}; })()" % (table, key, value))


def test():
    hostfit, engine_bin, outdir = sys.argv[1:4]
    if os.geteuid() != 0:
        raise chromium.Unavailable("the daemon's engines need root (cgroups)")
    chromium.find_chromium()
    os.makedirs(outdir, exist_ok=True)
    daemon = Daemon(hostfit, "sessions")
    left = []
    try:
        daemon.call("POST", "v1/engines", {"name": "tiny", "memory": "64Mi", "stop_timeout": "2s",
                                           "argv": [engine_bin, "--port", "{port}"]})
        with chromium.Browser(memory_limit_bytes=1 << 30, timeout_s=150) as browser:
            browser.set_size(1280, 800)
            browser.navigate(daemon.base + "?token=" + TOKEN)
            browser.wait_for("document.body.dataset.loaded === 'true'")
            check(browser.evaluate("!document.getElementById('sessions-section').hidden"),
                  "the engines and sessions section is hidden beside a daemon that has them")
            check(browser.evaluate("document.querySelector('#sessions tbody').innerText")
                  == "No sessions.", "sessions before any was opened")
            browser.evaluate("window.notReloaded = true")

            session = daemon.call("POST", "v1/sessions?wait=30", {"template": "tiny",
                                                                   "owner": "alice"})
            check(session["state"] == "OPEN", "session: %s" % session)
            sid, engine = session["id"], session["engine"]
            browser.wait_for("(() => { const e = document.querySelector("
                             "'#engines tr[data-engine=\"%s\"]'), s = document.querySelector("
                             "'#sessions tr[data-session=\"%s\"]');"
                             " return e && e.dataset.state === 'READY' && s &&"
                             " s.dataset.state === 'OPEN'; })()" % (engine, sid), timeout_s=10)
            shown = row(browser, "sessions", "session", sid)
            check(shown["engine"] == engine and "tiny/user/alice/default" in shown["text"],
                  "the session's row: %s" % shown)
            port = session["endpoint"]["port"]
            check("127.0.0.1:%d" % port in row(browser, "engines", "engine", engine)["text"],
                  "the engine's endpoint is not shown")
            browser.screenshot(os.path.join(outdir, "sessions-open-1280x800.png"))

            pid = [w for w in daemon.call("GET", "v1/workloads")["workloads"]
                   if w["name"] == "engine." + engine][0]["pid"]
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            browser.wait_for("(() => { const s = document.querySelector("
                             "'#sessions tr[data-session=\"%s\"]');"
                             " return s && s.dataset.state === 'FAILED' &&"
                             " s.innerText.includes('KILLED(SIGNAL 9)'); })()" % sid,
                             timeout_s=10, interval_s=0.02)
            print("session FAILED with the verdict %.0f ms after the kill" % (
                (time.monotonic() - killed) * 1000))
            browser.wait_for("document.querySelector('#engines tr[data-engine=\"%s\"]')"
                             ".dataset.state === 'ENDED'" % engine, timeout_s=10)
            check("KILLED(SIGNAL 9)" in row(browser, "engines", "engine", engine)["text"],
                  "the engine's verdict is not shown")
            check(browser.evaluate("window.notReloaded === true"), "the page reloaded")
            failed = daemon.call("GET", "v1/sessions/" + sid)
            check(failed["state"] == "FAILED", "the daemon says: %s" % failed)
            browser.screenshot(os.path.join(outdir, "sessions-failed-1280x800.png"))
            browser.set_size(390, 844, mobile=True)
            time.sleep(0.3)
            width = browser.evaluate("document.documentElement.scrollWidth")
            check(width <= 390, "the page is %d px wide on a 390 px screen" % width)
            browser.evaluate("document.getElementById('sessions-section').scrollIntoView()")
            browser.screenshot(os.path.join(outdir, "sessions-390x844.png"))
            problems = browser.console_problems()
            check(not problems, "the page logged errors: %s" % problems)
    finally:
        left = daemon.close()
    check(not left, "cgroups left behind by the daemon: %s" % left)


if __name__ == "__main__":
    chromium.main(test)
