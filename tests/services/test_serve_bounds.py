"""``colorize serve`` for real under hostile input: a chunked multipart body is cut at --max-bytes
while it arrives, every request's working pixels and a replica's pixels in flight are bounded (413,
503 with Retry-After), huge integer coordinates are a JSON 400, and the answer says how far the
result is from each hint. A tiny untrained hint model on 127.0.0.1, small limits to reach them."""

from __future__ import annotations

import io
import json
import socket
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from support.web import colorize_serve, http, multipart

MAX_BYTES = 1_000_000
WORKING = 64 * 128  # a 2:1 photo at size 64: one request's most, and all a replica may hold at once
PNG = {"Content-Type": "image/png"}


def photo(w: int = 200, h: int = 100) -> bytes:
    y, x = np.mgrid[0:h, 0:w]
    buf = io.BytesIO()
    Image.fromarray((40 + 150 * x / w + 30 * np.sin(y / 5)).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from support.training import tiny_generator_checkpoint

    ckpt = tiny_generator_checkpoint(tmp_path_factory.mktemp("bounds"), hints=True)
    args = ["--model", str(ckpt), "--max-bytes", str(MAX_BYTES), "--body-timeout-s", "60"]
    args += ["--max-working-pixels", str(WORKING), "--pixels-in-flight", str(WORKING), "--batch-wait-ms", "300"]
    with colorize_serve(args, tmp_path_factory.mktemp("serve")) as url:
        yield url


def _answer(sock: socket.socket) -> tuple:
    """(status, head, body) of one HTTP answer, read to its Content-Length (or the close): the head
    and the body may come in separate packets."""
    data = b""
    while b"\r\n\r\n" not in data and (more := sock.recv(65536)):
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    sizes = [int(h.split(b":", 1)[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")]
    while sizes and len(body) < sizes[0] and (more := sock.recv(65536)):
        body += more
    return int(head.split(b" ", 2)[1]), head, body


def test_a_chunked_multipart_upload_is_cut_at_max_bytes_as_it_arrives(service):
    """Twice the limit is sent and the body never ends: the answer must come without waiting for more."""
    port = int(service.rsplit(":", 1)[1])
    boundary = "b0undary"
    head = (
        f"POST /colorize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'.encode()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head + b"%x\r\n%s\r\n" % (len(part), part))
        chunk = b"\0" * 65536
        try:
            for _ in range(2 * MAX_BYTES // len(chunk)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:  # the server answered and closed while we were still sending
            pass
        status, _, body = _answer(sock)  # within the socket's 20 s: the body deadline is 60 s
    assert status == 413, body
    assert json.loads(body)["status"] == 413 and f"limit of {MAX_BYTES} bytes" in json.loads(body)["error"]


def test_one_request_over_its_working_pixels_is_413(service):
    status, _, body = http(service + "/colorize?size=64", photo(), PNG)
    assert status == 200, body[:300]
    status, _, body = http(service + "/colorize?size=80", photo(), PNG)  # 160 x 80 working pixels
    assert status == 413 and f"limit of {WORKING} working pixels" in json.loads(body)["error"], body


def test_pixels_in_flight_past_the_budget_are_503_with_retry_after(service):
    """Each request holds its pixels while its batch waits 300 ms: the others find no room."""

    def one(_):
        return http(service + "/colorize?size=64", photo(), PNG, timeout=120)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    statuses = sorted(a[0] for a in answers)
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}, statuses
    busy = next(a for a in answers if a[0] == 503)
    assert busy[1]["retry-after"] == "1" and "in flight" in json.loads(busy[2])["error"]
    assert http(service + "/healthz")[0] == 200


HUGE = [{"x": int("9" * 400), "y": 1, "color": "#fff"}]


@pytest.mark.parametrize("path", ["/colorize", "/suggest?x=1&y=1"])
def test_a_huge_integer_coordinate_is_a_json_400(service, path):
    sep = "&" if "?" in path else "?"
    text = json.dumps(HUGE)
    for url, headers, body in [
        (f"{service}{path}{sep}hints={urllib.parse.quote(text)}", PNG, photo()),
        (f"{service}{path}", *multipart({"image": ("a.png", photo())}, {"hints": text})),
    ]:
        status, h, out = http(url, body, headers)
        assert status == 400 and h["content-type"] == "application/json", out[:300]
        assert "x must be a finite number" in json.loads(out)["error"]


def test_the_answer_says_how_far_the_result_is_from_each_hint(service):
    hints = [{"x": 10, "y": 10, "color": "#ff0000"}, {"x": 150, "y": 60, "color": "#00ff00"}]
    url = f"{service}/colorize?size=64&hints={urllib.parse.quote(json.dumps(hints))}"
    status, h, out = http(url, photo(), PNG)
    assert status == 200, out[:300]
    assert h["x-hints"] == "2"
    far = [float(d) for d in h["x-hint-distances"].split(",")]
    assert len(far) == 2 and all(0 <= d < 300 for d in far)


def test_a_model_without_class_weights_says_a_prior_correction_changes_nothing(service):
    """This model records no class weights: /healthz says so, and a request's A is checked but
    applied as none (the same picture, X-Prior-Correction 0)."""
    assert json.loads(http(service + "/healthz")[2])["model"]["rebalanced"] is False
    status, h, plain = http(service + "/colorize?size=32", photo(), PNG)
    assert status == 200 and h["x-prior-correction"] == "0", plain[:300]
    status, h, asked = http(service + "/colorize?size=32&prior_correction=1", photo(), PNG)
    assert status == 200 and h["x-prior-correction"] == "0" and asked == plain, asked[:300]
    status, _, out = http(service + "/colorize?prior_correction=x", photo(), PNG)
    assert status == 400 and "prior_correction" in json.loads(out)["error"]


def test_a_query_string_too_long_for_the_proxy_is_a_json_400(service):
    """Serve's HTTP proxy refuses a request line over ~64 KB before the service sees it; in JSON too."""
    hints = json.dumps([{"x": 1, "y": 1, "color": "#ffffff"}] * 2000)
    status, h, body = http(f"{service}/colorize?hints={urllib.parse.quote(hints)}", photo(), PNG)
    assert status == 400 and h["content-type"] == "application/json", body[:300]
    assert json.loads(body) == {"error": json.loads(body)["error"], "status": 400} and "64 KB" in body.decode()
    assert http(service + "/healthz")[0] == 200
