"""The page of `tether chat --ws` in a real browser: headless Chromium (Debian's
chromium and chromium-driver) driven by Selenium (Debian's python3-selenium).

    chat_page.py TETHER_BINARY ARTIFACT_DIR

Starts `tether chat` on two free loopback ports, opens http://127.0.0.1:WS/ in
the browser, connects a plain TCP line client, and checks that each sees the
other's line and never its own, and the join and leave notices; saves a
screenshot of the page in ARTIFACT_DIR (chat.png, chat-io_uring.png when
TETHER_BACKEND=io_uring), then stops the server with SIGTERM and checks the page
shows the close (1001) and the server exits 0.

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


def start_chat(tether):
    p = subprocess.Popen([tether, "chat", "--listen", "127.0.0.1:0", "--ws", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines = [p.stdout.readline().decode(), p.stdout.readline().decode()]
    if not lines[1].endswith(" (websocket)\n"):
        p.kill()
        fail("listening lines: %r" % lines)
    tcp = int(lines[0].rsplit(":", 1)[1])
    ws = int(lines[1].split(" (websocket)")[0].rsplit(":", 1)[1])
    return p, tcp, ws


class Line:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.name = "%s:%d" % self.s.getsockname()
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                fail("the line client got EOF; so far %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def main():
    if len(sys.argv) != 3:
        fail("usage: chat_page.py TETHER_BINARY ARTIFACT_DIR")
    tether, artifacts = sys.argv[1], sys.argv[2]
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    # Selenium and Chromium talk over loopback only: no proxy from the environment.
    for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(v, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    os.makedirs(artifacts, exist_ok=True)
    backend = os.environ.get("TETHER_BACKEND", "")
    shot = os.path.join(artifacts, "chat-%s.png" % backend if backend else "chat.png")

    chat, tcp_port, ws_port = start_chat(tether)
    profile = tempfile.mkdtemp(prefix="tether-chromium-")
    driver = None
    try:
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium")
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-proxy-server", "--window-size=900,600",
                  "--user-data-dir=" + profile):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")),
                                  options=opts)
        driver.set_page_load_timeout(WAIT)
        wait = WebDriverWait(driver, WAIT)

        def status():
            return driver.find_element(By.ID, "status").text

        def peer_lines():
            return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#log li.peer")]

        def wait_for(what, cond):
            try:
                wait.until(lambda d: cond())
            except Exception:
                fail("%s; page status %r, lines %r" % (what, status(), peer_lines()))

        driver.get("http://127.0.0.1:%d/" % ws_port)
        if driver.title != "tether chat":
            fail("page title %r" % driver.title)
        wait_for("the page did not connect", lambda: status() == "connected")

        # The line client joins after the browser: the browser hears it.
        t = Line(tcp_port)
        wait_for("no join notice in the page",
                 lambda: "* %s joined" % t.name in peer_lines())

        t.s.sendall(b"hello from the line client\n")
        want = "[%s] hello from the line client" % t.name
        wait_for("the line did not reach the page", lambda: want in peer_lines())

        box = driver.find_element(By.ID, "text")
        box.send_keys("hello from the browser", Keys.ENTER)
        got = t.line()
        if not (got.startswith("[127.0.0.1:") and got.endswith("] hello from the browser")):
            fail("the line client got %r" % got)
        browser_name = got[1:got.index("]")]
        mine = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#log li.mine")]
        if mine != ["me: hello from the browser"]:
            fail("the page's own lines: %r" % mine)

        # Neither hears itself: a second line from each, then compare what came.
        t.s.sendall(b"second line\n")
        wait_for("the second line did not reach the page",
                 lambda: "[%s] second line" % t.name in peer_lines())
        box.send_keys("second from the browser", Keys.ENTER)
        got = t.line()
        if got != "[%s] second from the browser" % browser_name:
            fail("the line client got %r" % got)
        if any("from the browser" in line for line in peer_lines()):
            fail("the browser got its own line back: %r" % peer_lines())
        t.s.settimeout(0.3)
        try:
            extra = t.s.recv(65536)
        except socket.timeout:
            extra = b""
        if extra:
            fail("the line client got more than the browser's lines: %r" % extra)
        t.s.settimeout(WAIT)

        # A second line client comes and goes: both notices reach the page.
        t2 = Line(tcp_port)
        wait_for("no join notice for the second client",
                 lambda: "* %s joined" % t2.name in peer_lines())
        t2.s.close()
        wait_for("no leave notice", lambda: "* %s left" % t2.name in peer_lines())
        notices = driver.find_elements(By.CSS_SELECTOR, "#log li.notice")
        if len(notices) < 3:
            fail("notices styled as such: %d" % len(notices))

        if not driver.save_screenshot(shot) or os.path.getsize(shot) < 1000:
            fail("no screenshot at %s" % shot)

        # SIGTERM: the page is told, then closed with 1001; the server exits 0.
        chat.send_signal(signal.SIGTERM)
        wait_for("no shutdown notice", lambda: "* server shutting down" in peer_lines())
        wait_for("the page did not see the close", lambda: status() == "closed (1001)")
        try:
            rc = chat.wait(WAIT)
        except subprocess.TimeoutExpired:
            fail("tether chat did not exit after SIGTERM")
        if rc != 0:
            fail("tether chat exit %d: %r" % (rc, chat.stderr.read()[-2000:]))
        t.s.close()
        print("ok: browser and line client chatted on %s; screenshot %s"
              % (backend or "the default backend", shot))
    finally:
        if driver is not None:
            driver.quit()
        if chat.poll() is None:
            chat.kill()
            chat.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    print("took %.1f s" % (time.monotonic() - t0))
