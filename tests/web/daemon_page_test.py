"""The page against a real `hostfit daemon` on this machine, in headless Chromium.

Three workloads in real cgroups: `pinned` (one CPU placed through the ledger), `quota` (half a CPU,
no placement) and `hog`, which allocates past its 64 MiB limit when the test creates a trigger
file. The test checks that the TCP listener gives nothing away without the token (401, no page),
signs in with /?token=, finds the held CPU where the daemon's placement and topology put it and
the three workloads RUNNING, then kills `hog` and waits, without a reload, for its OOM kill at the
top of the events list. Screenshots at 1280x800 and 390x844 go to OUTDIR.

  daemon_page_test.py HOSTFIT OUTDIR
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium  # noqa: E402
from chromium import check  # noqa: E402

TOKEN = "daemon-page-test-" + os.urandom(8).hex()
PYTHON = "/usr/bin/python3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, hostfit, tag):
        self.dir = tempfile.mkdtemp(prefix="hostfit-web-%s-" % tag)
        self.parent = "/hostfit-webtest-%d-%s" % (os.getpid(), tag)
        self.port = free_port()
        self.base = "http://127.0.0.1:%d/" % self.port
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN)
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.process = subprocess.Popen(
            [hostfit, "daemon", "--socket", os.path.join(self.dir, "api.sock"),
             "--state-dir", os.path.join(self.dir, "state"), "--cgroup-parent", self.parent,
             "--listen", "127.0.0.1:%d" % self.port, "--token-file", token_file],
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            check(self.process.poll() is None, "the daemon died: %s" % self.log_text())
            try:
                self.call("GET", "v1/node")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        raise AssertionError("the daemon did not answer in 20 s: %s" % self.log_text())

    def log_text(self):
        with open(os.path.join(self.dir, "daemon.log")) as f:
            return f.read()[-2000:]

    def call(self, method, path, body=None, token=TOKEN):
        request = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            text = r.read()
            return json.loads(text) if text else None

    def close(self):
        """Deletes the workloads (a daemon that leaves keeps them running), stops the daemon and
        removes whatever cgroup is left; returns the cgroup directories that had to be removed."""
        try:
            for w in self.call("GET", "v1/workloads")["workloads"]:
                try:
                    self.call("DELETE", "v1/workloads/%s?force=1" % w["name"])
                except urllib.error.HTTPError:
                    pass
        except Exception:
            pass
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        left = remove_cgroups(self.parent)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return left


def remove_cgroups(parent):
    """Every directory of `parent` in the mounted hierarchies, killed and removed, deepest first;
    returns the ones below `parent` (workload groups the daemon should have removed)."""
    found = []
    for hierarchy in os.listdir("/sys/fs/cgroup"):
        top = os.path.join("/sys/fs/cgroup", hierarchy, parent.lstrip("/"))
        if os.path.islink(os.path.join("/sys/fs/cgroup", hierarchy)) or not os.path.isdir(top):
            continue
        for root, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            if root != top:  # the parent itself may stay; a workload's group may not
                found.append(root)
            for _ in range(500):
                with open(os.path.join(root, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                try:
                    os.rmdir(root)
                    break
                except OSError:
                    time.sleep(0.01)
    return found


def workloads(trigger):
    sleeper = ["sleep", "1000"]
    return [
        {"name": "pinned", "argv": sleeper, "cpus": 1, "placement": "balanced", "memory": "64Mi"},
        {"name": "quota", "argv": sleeper, "cpus": 0.5, "memory": "64Mi"},
        {"name": "hog", "memory": "64Mi",
         "argv": [PYTHON, "-c", "import os, time\nwhile not os.path.exists(%r): time.sleep(0.02)\n"
                                "bytearray(512 << 20)" % trigger]},
    ]


def test():
    hostfit, outdir = sys.argv[1:3]
    if os.geteuid() != 0:
        raise chromium.Unavailable("the daemon's workloads need root (cgroups)")
    if not os.access(PYTHON, os.X_OK):
        raise chromium.Unavailable("the OOM workload needs %s" % PYTHON)
    chromium.find_chromium()
    os.makedirs(outdir, exist_ok=True)
    daemon = Daemon(hostfit, "page")
    left = []
    try:
        trigger = os.path.join(daemon.dir, "go")
        for w in workloads(trigger):
            daemon.call("POST", "v1/workloads", w)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = {w["name"]: w["state"] for w in daemon.call("GET", "v1/workloads")["workloads"]}
            if set(states.values()) == {"RUNNING"}:
                break
            time.sleep(0.05)
        check(set(states.values()) == {"RUNNING"}, "workloads did not start: %s" % states)
        holds = {h["owner"]: h["cpus"] for h in daemon.call("GET", "v1/placements")["holds"]}
        check(list(holds) == ["pinned"], "holds: %s" % holds)
        held_cpu = holds["pinned"]
        topology = daemon.call("GET", "v1/node/topology")["topology"]
        node_of = {}
        for n in topology["numa_nodes"]:
            for part in n["cpus"].split(","):
                a, _, b = part.partition("-")
                for c in range(int(a), int(b or a) + 1):
                    node_of[str(c)] = str(n["id"])

        # Without the token: 401 for the page, its files and the API, and a page with nothing.
        for path in ("", "ui/hostfit.js", "v1/workloads", "v1/events?since=0"):
            try:
                urllib.request.urlopen(daemon.base + path, timeout=5)
                check(False, "GET /%s without the token was answered" % path)
            except urllib.error.HTTPError as e:
                check(e.code == 401, "GET /%s without the token: %d" % (path, e.code))
        try:
            daemon.call("GET", "v1/workloads", token="wrong")
            check(False, "a wrong token was accepted")
        except urllib.error.HTTPError as e:
            check(e.code == 401, "wrong token: %d" % e.code)

        with chromium.Browser(memory_limit_bytes=1 << 30, timeout_s=150) as browser:
            browser.set_size(1280, 800)
            browser.navigate(daemon.base)
            check(browser.evaluate("document.getElementById('topology') === null"),
                  "the page rendered without the token")
            browser.navigate(daemon.base + "?token=" + TOKEN)
            check(browser.evaluate("location.search") == "", "the token stayed in the address bar")
            browser.wait_for("document.body.dataset.loaded === 'true'")
            browser.evaluate("window.notReloaded = true")

            cell = browser.evaluate(
                "(() => { const c = document.querySelector('#topology .cpu[data-cpu=\"%s\"]');"
                " return c && {kind: c.dataset.holderKind, holder: c.dataset.holder,"
                " node: c.closest('.numa') && c.closest('.numa').dataset.node,"
                " label: c.innerText}; })()" % held_cpu)
            check(cell and cell["kind"] == "workload" and cell["holder"] == "pinned",
                  "CPU %s: %s" % (held_cpu, cell))
            check(cell["node"] == node_of[held_cpu], "CPU %s under node %s, not %s" % (
                held_cpu, cell["node"], node_of[held_cpu]))
            others = browser.evaluate(
                "[...document.querySelectorAll('#topology .cpu[data-holder-kind=\"workload\"]')]"
                ".map(c => c.dataset.cpu)")
            check(others == [held_cpu], "CPUs shown as held: %s, the daemon holds %s" % (
                others, held_cpu))
            rows = browser.evaluate(
                "[...document.querySelectorAll('#workloads tbody tr')]"
                ".map(r => r.dataset.workload + ':' + r.dataset.state)")
            check(sorted(rows) == ["hog:RUNNING", "pinned:RUNNING", "quota:RUNNING"],
                  "rows: %s" % rows)
            # CPU use of quota: computed from cpu.usage_usec where the daemon gives it (two reads
            # 5 s apart at least); "—" where it does not.
            has_cpu = "cpu" in [w for w in daemon.call("GET", "v1/workloads")["workloads"]
                                if w["name"] == "quota"][0]
            cpu_cell = ("document.querySelector('tr[data-workload=\"quota\"] .cpu-use .cell')"
                        ".firstChild.textContent")
            if has_cpu:
                text, _ = browser.wait_for("/^\\d+\\.\\d\\d of 0\\.5$/.test(%s) && %s" % (
                    cpu_cell, cpu_cell), timeout_s=15)
            else:
                text = browser.evaluate(cpu_cell)
                check(text == "— of 0.5", "CPU use without the daemon's counter: %r" % text)
            print("CPU column of 'quota' (%s): %s" % (
                "cpu in the daemon's answer" if has_cpu else "no cpu key in the daemon's answer",
                text))
            browser.screenshot(os.path.join(outdir, "daemon-before-1280x800.png"))

            with open(trigger, "w") as f:
                f.write("go")
            killed = time.monotonic()
            _, waited = browser.wait_for(
                "(() => { const li = document.querySelector('#events li');"
                " return li && li.classList.contains('oom') && li.dataset.workload === 'hog'"
                " && li.innerText.includes('OOM'); })()", timeout_s=10, interval_s=0.02)
            shown_s = time.monotonic() - killed
            line = browser.evaluate("document.querySelector('#events li.oom').innerText")
            print("OOM verdict in the events list %.0f ms after the trigger: %s" % (
                shown_s * 1000, line.replace("\n", " | ")))
            check(shown_s <= 2.0, "the OOM verdict took %.2f s to show" % shown_s)
            check("OOM" in line and "hog" in line, "OOM line: %r" % line)
            check(browser.evaluate("window.notReloaded === true"), "the page reloaded")
            browser.wait_for("document.querySelector('tr[data-workload=\"hog\"]')"
                             ".dataset.state === 'STOPPED'", timeout_s=10)
            hog = browser.evaluate("document.querySelector('tr[data-workload=\"hog\"]').innerText")
            check("KILLED(OOM)" in hog, "hog's row: %r" % hog)
            browser.screenshot(os.path.join(outdir, "daemon-1280x800.png"))
            browser.set_size(390, 844, mobile=True)
            time.sleep(0.3)
            width = browser.evaluate("document.documentElement.scrollWidth")
            check(width <= 390, "the page is %d px wide on a 390 px screen" % width)
            browser.screenshot(os.path.join(outdir, "daemon-390x844.png"))
            # The 401s of the visit before signing in (the page, and /favicon.ico, which the
            # error page makes Chromium ask for) may be logged late; nothing else may be.
            before = (" " + daemon.base, " " + daemon.base + "favicon.ico")
            problems = [p for p in browser.console_problems() if not p.endswith(before)]
            check(not problems, "the page logged errors: %s" % problems)
            print("screenshots in %s" % outdir)
    finally:
        left = daemon.close()
    check(not left, "cgroups left behind by the daemon: %s" % left)


if __name__ == "__main__":
    chromium.main(test)
