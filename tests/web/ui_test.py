"""`hostfit ui`: directions without a flag, and with --serve a read-only loopback front for a real
daemon's socket behind a token of its own.

  ui_test.py HOSTFIT
"""
import http.cookiejar
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium  # noqa: E402
from chromium import check  # noqa: E402
from daemon_page_test import Daemon  # noqa: E402


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


def status(opener, url, method="GET", data=None):
    try:
        with opener.open(urllib.request.Request(url, method=method, data=data), timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def test():
    hostfit = sys.argv[1]
    if os.geteuid() != 0:
        raise chromium.Unavailable("the daemon needs root (cgroups)")
    missing = subprocess.run([hostfit, "ui", "--socket", "/nonexistent/hostfit.sock"],
                             capture_output=True, text=True)
    check(missing.returncode == 1 and missing.stderr.startswith("hostfit: ") and
          "/nonexistent/hostfit.sock" in missing.stderr, "no daemon: %r" % (missing,))
    bad = subprocess.run([hostfit, "ui", "--serve", "--address", "0.0.0.0"],
                         capture_output=True, text=True)
    check(bad.returncode == 2 and "0.0.0.0 is not a loopback address" in bad.stderr,
          "non-loopback address: %r" % (bad,))

    daemon = Daemon(hostfit, "ui")
    socket_path = os.path.join(daemon.dir, "api.sock")
    try:
        told = subprocess.run([hostfit, "ui", "--socket", socket_path, "-o", "json"],
                              capture_output=True, text=True, timeout=20)
        check(told.returncode == 0, "hostfit ui: %r" % (told,))
        directions = json.loads(told.stdout)
        check(directions["socket"] == socket_path and socket_path in directions["ssh"],
              "directions: %s" % directions)

        serve = subprocess.Popen([hostfit, "ui", "--serve", "--socket", socket_path],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = serve.stdout.readline().strip()
            check(url.startswith("http://127.0.0.1:") and "/?token=" in url, "URL: %r" % url)
            base = url.split("?")[0]
            plain = urllib.request.build_opener(NoRedirect())
            for path in ("", "v1/workloads", "ui/hostfit.js"):
                code, _, _ = status(plain, base + path)
                check(code == 401, "GET /%s without the token: %d" % (path, code))
            jar = http.cookiejar.CookieJar()
            browser = urllib.request.build_opener(NoRedirect(),
                                                  urllib.request.HTTPCookieProcessor(jar))
            code, _, headers = status(browser, url)
            check(code in (302, 303) and "HttpOnly" in headers.get("Set-Cookie", ""),
                  "the token link: %d %s" % (code, headers))
            code, body, headers = status(browser, base)
            check(code == 200 and b"<title>hostfit</title>" in body, "page: %d" % code)
            code, body, _ = status(browser, base + "v1/node")
            check(code == 200 and "hostname" in json.loads(body), "node: %d %r" % (code, body))
            code, body, _ = status(browser, base + "v1/events?since=0&wait=0")
            check(code == 200 and "events" in json.loads(body), "events: %d" % code)
            code, _, _ = status(browser, base + "v1/workloads", "POST", b"{}")
            check(code == 405, "POST through hostfit ui: %d, the port must be read-only" % code)
        finally:
            serve.terminate()
            serve.wait(timeout=10)
        check(serve.returncode == 0, "hostfit ui --serve exited %s on SIGTERM" % serve.returncode)
    finally:
        daemon.close()


if __name__ == "__main__":
    chromium.main(test)
