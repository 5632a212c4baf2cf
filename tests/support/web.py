"""``colorize serve`` for the service tests: the real command on a free loopback port, HTTP calls that
treat error statuses as answers, multipart bodies, and a headless Chromium (Debian's chromium +
chromium-driver, `make test-deps`) with the page's own waits."""

from __future__ import annotations

import base64
import contextlib
import io
import shutil
import subprocess
import sys
import time
import urllib.parse
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image

from support import ROOT
from support.servers import free_port, stop_gracefully, wait_for_port


def http(url: str, data: bytes = None, headers: dict = None, timeout: float = 60):
    """(status, headers, body) for a GET (data None) or POST; HTTP errors are answers too, and so is
    an answer the server sends before it has read the whole body (a 413 cut at the limit), when it
    closes while the rest is still being sent."""
    u = urllib.parse.urlsplit(url)
    headers = dict(headers or {})
    if data is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/x-www-form-urlencoded"  # as urllib sends a POST
    conn = HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        try:
            conn.request("GET" if data is None else "POST", u.path + (f"?{u.query}" if u.query else ""), data, headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all: its answer is already here
        r = conn.getresponse()
        return r.status, dict(r.headers), r.read()
    finally:
        conn.close()


def multipart(files: Dict[str, Tuple[str, bytes]], fields: Optional[Dict[str, str]] = None):
    """(headers, body) of a multipart/form-data form: ``files`` {name: (filename, bytes)}, text ``fields``."""
    boundary = "colorize-test-boundary"
    parts: List[bytes] = []
    for name, (filename, data) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    for name, text in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'.encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body


def _status(url: str) -> int:
    try:
        return http(url, timeout=5)[0]
    except (OSError, HTTPException):  # not answering yet (timeouts are OSErrors)
        return 0


@contextlib.contextmanager
def colorize_serve(args: List[str], folder: Path, ready_s: float = 300) -> Iterator[str]:
    """`colorize serve ARGS` on a free 127.0.0.1 port in its own process group, its URL once
    /healthz answers; stopped with SIGTERM after, and it must exit 0 taking its whole Ray with it."""
    log_path = folder / "serve.log"
    port = free_port()
    argv = [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port), *args]
    log = open(log_path, "wb")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, ready_s, proc)  # Serve's proxy listens before the application is ready
        deadline = time.monotonic() + ready_s
        while _status(url + "/healthz") != 200:
            assert proc.poll() is None, f"colorize serve exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready after {ready_s} s: {log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        yield url
    finally:
        left = stop_gracefully(proc, timeout=60)
        log.close()
        assert proc.returncode == 0, f"exit {proc.returncode}: {log_path.read_text()[-3000:]}"
        assert not left, f"processes of colorize serve left running after it exited: {left}"


@contextlib.contextmanager
def chromium():
    """A headless Chromium driven by Selenium, 1200 x 900."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    exe, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert exe and driver, "chromium and chromium-driver are missing: `make test-deps` installs them"
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(a)
    b = webdriver.Chrome(options=opts, service=Service(driver))
    b.set_script_timeout(30)
    try:
        yield b
    finally:
        b.quit()


def shown_image(b) -> np.ndarray:
    """The colour image the page shows, as the browser holds it (its blob's bytes)."""
    data = b.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(document.getElementById('result').src).then(r => r.arrayBuffer()).then(buf => {
          let s = ''; const a = new Uint8Array(buf);
          for (let i = 0; i < a.length; i += 8192) s += String.fromCharCode.apply(null, a.subarray(i, i + 8192));
          done(btoa(s));
        }).catch(e => done('ERROR ' + e));"""
    )
    assert not data.startswith("ERROR"), data
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def wait_done(b, what: str, timeout: float = 60) -> None:
    """Until the page shows a finished result whose status line says ``what`` (or an error: fails)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(b, timeout).until(
        lambda d: d.execute_script(
            "const c = document.getElementById('compare'), s = document.getElementById('status').textContent;"
            "return c.dataset.state === 'done' && s.includes(arguments[0]) || c.dataset.state === 'error';",
            what,
        ),
        message=f"page never showed {what}",
    )
    assert b.find_element("id", "compare").get_attribute("data-state") == "done", b.find_element("id", "status").text


def wait_connected(b, timeout: float = 30) -> None:
    """Until the page has read /healthz (the temperature slider is enabled then)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(b, timeout).until(
        lambda d: not d.find_element("id", "temperature").get_attribute("disabled"), message="never read /healthz"
    )
