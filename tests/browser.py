"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by
Selenium, for the tests of ``migplane dashboard``; and what the page shows,
read from its DOM. Never a downloaded browser or driver.

Shared by tests/unit/cli/test_cli_dashboard.py and
tests/functional/agent/test_dashboard_lab.py (loaded by path: the tests are not a
package). Screenshots go to ``$MIGPLANE_ARTIFACTS`` (default ``artifacts/`` of the
checkout, ignored by git), for CI to keep.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900")

#: What the page shows, as the browser rendered it.
READ_PAGE = """
const text = (root, sel) => { const n = root.querySelector(sel); return n ? n.textContent : null; };
return {
  polls: Number(document.body.getAttribute('data-polls') || 0),
  agents: Array.from(document.querySelectorAll('#agents [data-agent]')).map(
    a => ({name: a.getAttribute('data-agent'), text: a.textContent})),
  migrations: Array.from(document.querySelectorAll('#migrations tbody tr')).map(tr => ({
    id: tr.getAttribute('data-migration-id'), agent: tr.getAttribute('data-agent'),
    guest: text(tr, '.guest'), route: text(tr, '.route'), strategy: text(tr, '.strategy'),
    status: text(tr, '.status'),
    percent: Number(tr.querySelector('.percent').getAttribute('data-percent')),
    bar: tr.querySelector('.bar .fill').style.width,
    planes: Array.from(tr.querySelectorAll('.planes polyline')).map(
      p => p.getAttribute('data-plane')),
    downtime: text(tr, '.downtime'), escalations: text(tr, '.escalations')})),
  evacuations: Array.from(document.querySelectorAll('.evacuation')).map(e => ({
    id: e.getAttribute('data-evacuation-id'), status: e.getAttribute('data-status'),
    heading: text(e, '.heading'),
    lanes: Array.from(e.querySelectorAll('.lane')).map(l => ({
      guest: l.getAttribute('data-guest'), status: l.getAttribute('data-status'),
      bars: l.querySelectorAll('rect').length, label: text(l, 'text')}))})),
};
"""


def skip_reason():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            return "no %s (apt-get install chromium chromium-driver)" % path
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (test-requirements.txt)"
    return None


class Browser:
    """A fresh headless Chromium with its own profile; :meth:`quit` removes both."""

    def __init__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="migplane-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS + ("--user-data-dir=%s" % self.profile,):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

    def open(self, url):
        self.driver.get(url)

    def page(self):
        return self.driver.execute_script(READ_PAGE)

    def wait(self, predicate, timeout=120, what="the awaited state", poll=0.2):
        """The page once ``predicate(page)`` holds; a generous ``timeout`` only turns
        a hang into a failure naming ``what`` and the last page read."""
        deadline = time.monotonic() + timeout
        while True:
            page = self.page()
            if predicate(page):
                return page
            if time.monotonic() > deadline:
                raise AssertionError("the page never showed %s; it shows %r" % (what, page))
            time.sleep(poll)

    def screenshot(self, name):
        folder = Path(os.environ.get("MIGPLANE_ARTIFACTS") or ROOT / "artifacts")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        self.driver.save_screenshot(str(path))
        return path

    def quit(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


class NetnsForward:
    """127.0.0.1:``port`` here forwarded to 127.0.0.1:``port`` in network namespace
    ``netns`` (a page served in a lab's controller namespace, for a browser run
    here). The same port on both sides, so the page's Host header is its own."""

    CLONE_NEWNET = 0x40000000

    def __init__(self, netns, port):
        import socket
        import threading

        self.netns = netns
        self.port = port
        self._socket = socket
        self.listener = socket.create_server(("127.0.0.1", port))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _enter(self):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/var/run/netns/%s" % self.netns, os.O_RDONLY)
        try:
            if libc.setns(fd, self.CLONE_NEWNET) != 0:  # this thread only
                raise OSError(ctypes.get_errno(), "setns %s" % self.netns)
        finally:
            os.close(fd)

    def _accept(self):
        import threading

        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client):
        import selectors

        try:
            self._enter()
            upstream = self._socket.create_connection(("127.0.0.1", self.port), timeout=10)
        except OSError:
            client.close()
            return
        with client, upstream:
            selector = selectors.DefaultSelector()
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in selector.select(1.0):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)

    def close(self):
        self._stop.set()
        self.listener.close()
