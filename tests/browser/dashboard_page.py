"""The dashboard of `tether echo --dashboard` in a real browser: headless Chromium
(Debian's chromium and chromium-driver) driven by Selenium (Debian's
python3-selenium).

    dashboard_page.py TETHER_BINARY ARTIFACT_DIR

Starts `tether echo` with a dashboard (and a token) on free loopback ports, opens
http://127.0.0.1:DASH/?token=T, connects two plain TCP echo clients and checks the
page shows a row for each (its address, its bytes once it sent some), then that
the row goes when its client leaves while the other stays; saves a screenshot in
ARTIFACT_DIR (dashboard.png, dashboard-io_uring.png when TETHER_BACKEND=io_uring).

Policy: a missing browser, driver or Selenium is a FAILURE (exit 1) with the
command that installs them (scripts/deps.sh), never a silent pass. The whole run
is bounded (each wait 10 s; ctest's TIMEOUT cuts it at 60 s).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

WAIT = 10


def fail(msg):
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.exit(1)


def need_browser():
    missing = [b for b in ("chromium", "chromedriver") if shutil.which(b) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("python3-selenium")
    if missing:
        fail("missing %s: this test needs a real browser; install it with "
             "`sudo bash scripts/deps.sh` (Debian chromium, chromium-driver, "
             "python3-selenium)" % ", ".join(missing))


TOKEN = "t0ken-for-the-test"


def start_echo(tether):
    p = subprocess.Popen([tether, "echo", "--listen", "127.0.0.1:0", "--dashboard", ":0",
                          "--dashboard-token", TOKEN],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines = [p.stdout.readline().decode(), p.stdout.readline().decode()]
    if not lines[1].endswith(" (dashboard)\n") or "127.0.0.1:" not in lines[1]:
        p.kill()
        fail("listening lines: %r" % lines)
    port = int(lines[0].rsplit(":", 1)[1])
    dash = int(lines[1].split(" (dashboard)")[0].rsplit(":", 1)[1])
    return p, port, dash


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.name = "%s:%d" % self.s.getsockname()

    def echo(self, data):
        self.s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = self.s.recv(65536)
            if not chunk:
                fail("the echo client got EOF")
            got += chunk


def main():
    if len(sys.argv) != 3:
        fail("usage: dashboard_page.py TETHER_BINARY ARTIFACT_DIR")
    tether, artifacts = sys.argv[1], sys.argv[2]
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(v, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    os.makedirs(artifacts, exist_ok=True)
    backend = os.environ.get("TETHER_BACKEND", "")
    shot = os.path.join(artifacts, "dashboard-%s.png" % backend if backend else "dashboard.png")

    echo, port, dash = start_echo(tether)
    profile = tempfile.mkdtemp(prefix="tether-chromium-")
    driver = None
    try:
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium")
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-proxy-server", "--window-size=1000,700",
                  "--user-data-dir=" + profile):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")),
                                  options=opts)
        driver.set_page_load_timeout(WAIT)
        wait = WebDriverWait(driver, WAIT)

        def status():
            return driver.find_element(By.ID, "status").text

        def rows():
            return {r.get_attribute("data-id"): [c.text for c in r.find_elements(By.TAG_NAME, "td")]
                    for r in driver.find_elements(By.CSS_SELECTOR, "#rows tr")}

        def peers():
            return [cells[0] for cells in rows().values() if cells]

        def wait_for(what, cond):
            try:
                wait.until(lambda d: cond())
            except Exception:
                fail("%s; page status %r, rows %r" % (what, status(), rows()))

        driver.get("http://127.0.0.1:%d/?token=%s" % (dash, TOKEN))
        if driver.title != "tether dashboard":
            fail("page title %r" % driver.title)
        wait_for("the page did not connect", lambda: status() == "connected")
        wait_for("rows before any client", lambda: rows() == {})

        a = Client(port)
        wait_for("no row for the first client", lambda: a.name in peers())
        b = Client(port)
        wait_for("no row for the second client", lambda: sorted(peers()) == sorted([a.name, b.name]))
        a.echo(b"x" * 3000)
        b.echo(b"hello\n")

        def bytes_of(name):
            for cells in rows().values():
                if cells and cells[0] == name:
                    return cells[3], cells[4]
            return None
        # 3000 bytes each way, shown as 2.9K once the next tick came.
        wait_for("the first client's bytes", lambda: bytes_of(a.name) == ("2.9K", "2.9K"))
        wait_for("the second client's bytes", lambda: bytes_of(b.name) == ("6", "6"))
        wait_for("the totals", lambda: "open 2" in driver.find_element(By.ID, "totals").text)
        if not driver.save_screenshot(shot) or os.path.getsize(shot) < 1000:
            fail("no screenshot at %s" % shot)

        a.s.close()
        wait_for("the row did not go when its client left", lambda: peers() == [b.name])
        b.s.close()
        wait_for("the last row did not go", lambda: rows() == {})

        echo.send_signal(signal.SIGTERM)
        try:
            rc = echo.wait(WAIT)
        except subprocess.TimeoutExpired:
            fail("tether echo did not exit after SIGTERM")
        if rc != 0:
            fail("tether echo exit %d: %r" % (rc, echo.stderr.read()[-2000:]))
        print("ok: the dashboard showed and dropped both clients on %s; screenshot %s"
              % (backend or "the default backend", shot))
    finally:
        if driver is not None:
            driver.quit()
        if echo.poll() is None:
            echo.kill()
            echo.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    print("took %.1f s" % (time.monotonic() - t0))
