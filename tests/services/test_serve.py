"""``colorize serve`` for real: the command in its own process group on 127.0.0.1 (a local Ray, the tiny
checkpoint), its HTTP API (round trip, 400/413/415/503, healthz) and its web page in a headless
Chromium (Debian's chromium + chromium-driver, `make test-deps`). The server is stopped with SIGTERM
and must take its whole Ray with it."""

from __future__ import annotations

import io
import json
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from pipeline.core import color
from support.web import chromium, colorize_serve, http, multipart, shown_image, wait_connected, wait_done

MAX_BYTES = 1_000_000
MAX_PIXELS = 1_000_000
BODY_TIMEOUT_S = 3
SLOW_CLIENTS = 20  # more than the ingress takes at once with these limits (2 * 3 uploads + 8 others)
OWN_TEMPERATURE = 0.45  # the served model's own: not the 0.38 a page might assume


def grey_photo(w: int, h: int, fmt: str = "PNG") -> bytes:
    """A grey picture with structure (gradients and discs), encoded."""
    y, x = np.mgrid[0:h, 0:w]
    g = 40 + 120 * x / w + 60 * np.sin(y / 9.0) * ((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2)
    buf = io.BytesIO()
    Image.fromarray(np.clip(g, 0, 255).astype(np.uint8), "L").save(buf, fmt)
    return buf.getvalue()


def chroma(rgb: np.ndarray) -> float:
    lab = color.rgb_to_lab(rgb)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


@pytest.fixture(scope="module")
def served_ckpt(tmp_path_factory):
    from support.training import tiny_generator_checkpoint

    return tiny_generator_checkpoint(tmp_path_factory.mktemp("served"), temperature=OWN_TEMPERATURE, rebalanced=True)


@pytest.fixture(scope="module")
def service(served_ckpt, tmp_path_factory):
    """`colorize serve` on a free loopback port: small limits (a model queue of 2 + 1) to reach them."""
    args = ["--model", str(served_ckpt)]
    args += ["--max-bytes", str(MAX_BYTES), "--max-pixels", str(MAX_PIXELS), "--body-timeout-s", str(BODY_TIMEOUT_S)]
    args += ["--max-ongoing-requests", "2", "--max-queued-requests", "1", "--max-batch-size", "2"]
    with colorize_serve(args, tmp_path_factory.mktemp("serve")) as url:
        yield url


def test_healthz_and_page(service):
    status, headers, body = http(service + "/healthz")
    assert status == 200
    info = json.loads(body)
    assert info["status"] == "ok" and info["model"]["step"] == 7 and info["limits"]["max_bytes"] == MAX_BYTES
    assert "/" not in info["model"]["ref"], info  # public: no filesystem path of the model
    status, headers, body = http(service + "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'id="file"' in body and b'id="temperature"' in body and b'id="split"' in body
    assert b"http://" not in body and b"https://" not in body  # no external fonts, scripts or CDNs
    assert b"0.38" not in body  # the temperature comes from the model (/healthz), not the page
    assert info["model"]["temperature"] == OWN_TEMPERATURE


def test_favicon(service):
    status, headers, body = http(service + "/favicon.ico")
    assert status == 200 and headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(body)).format == "ICO"


def test_examples_are_served_and_nothing_else(service):
    status, _, body = http(service + "/examples")
    names = json.loads(body)["examples"]
    assert status == 200 and len(names) >= 3 and all(n.endswith(".jpg") for n in names)
    status, headers, body = http(service + "/examples/" + names[0])
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(body)).mode == "L"  # grey photos, to colour
    for bad in ("../index.html", "..%2F__init__.py", "nope.jpg", "%2Fetc%2Fpasswd"):
        assert http(service + "/examples/" + bad)[0] == 404, bad


def test_grey_preview_of_a_tiff(service):
    """Browsers do not show TIFF: the server renders the grey side (the photo's own L)."""
    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "TIFF")
    status, headers, body = http(service + "/grey", buf.getvalue(), {"Content-Type": "image/tiff"})
    assert status == 200 and headers["content-type"] == "image/png"
    grey = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    assert grey.shape == (30, 40, 3) and chroma(grey) < 1
    assert np.abs(color.rgb_to_lab(grey)[..., 0] - color.rgb_to_lab(rgb)[..., 0]).max() < 1.0
    assert http(service + "/grey", b"not an image", {"Content-Type": "image/png"})[0] == 400


def test_round_trip_keeps_size_and_lightness(service):
    data = grey_photo(123, 77)
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    for kind, headers, body in [
        ("raw", {"Content-Type": "image/png"}, data),
        ("multipart", *multipart({"image": ("photo.png", data)})),
    ]:
        status, h, out = http(service + "/colorize?temperature=0.3&size=64", body, headers)
        assert status == 200, (kind, out[:300])
        assert h["content-type"] == "image/png" and h["x-image-size"] == "123x77"
        rgb = np.asarray(Image.open(io.BytesIO(out)))
        assert rgb.shape == (77, 123, 3), kind
        dL = np.abs(color.rgb_to_lab(rgb)[..., 0] - color.rgb_to_lab(grey)[..., 0])
        assert dL.max() < 1.0, (kind, dL.max())  # L kept up to 8-bit rounding
        assert chroma(rgb) > 5, kind  # the tiny model's head favours strong colour
    status, h, out = http(service + "/colorize?format=jpeg", grey_photo(64, 48, "JPEG"), {"Content-Type": "image/jpeg"})
    assert status == 200 and h["content-type"] == "image/jpeg" and Image.open(io.BytesIO(out)).size == (64, 48)


@pytest.mark.parametrize(
    "name, query, headers, body, status",
    [
        ("not an image", "", {"Content-Type": "image/png"}, b"this is not a png", 400),
        ("bad temperature", "?temperature=-1", {"Content-Type": "image/png"}, grey_photo(32, 32), 400),
        ("bad prior correction", "?prior_correction=1.5", {"Content-Type": "image/png"}, grey_photo(32, 32), 400),
        ("prior correction nan", "?prior_correction=nan", {"Content-Type": "image/png"}, grey_photo(32, 32), 400),
        ("bad format", "?format=gif", {"Content-Type": "image/png"}, grey_photo(32, 32), 400),
        ("too many bytes", "", {"Content-Type": "image/png"}, b"\0" * (MAX_BYTES + 1), 413),
        ("too many pixels", "", {"Content-Type": "image/png"}, grey_photo(1100, 1000), 413),
        ("unsupported type", "", {"Content-Type": "text/plain"}, grey_photo(32, 32), 415),
        ("no type", "", {"Content-Type": ""}, grey_photo(32, 32), 415),
        ("thin strip", "?size=64", {"Content-Type": "image/png"}, grey_photo(3000, 8), 413),
        ("broken form", "", {"Content-Type": "multipart/form-data; boundary=b"}, b"--b\r\nno headers", 400),
    ],
)
def test_refusals_are_json_with_their_status(service, name, query, headers, body, status):
    got, h, out = http(service + "/colorize" + query, body, headers)
    assert got == status, (name, out[:300])
    assert h["content-type"] == "application/json" and json.loads(out)["status"] == status, name


def test_prior_correction_is_a_request_parameter(service):
    """The model's own A by default (0), another per request: A 1 divides the served model's class
    weights back out, which cancels its head's pull toward strong colour."""
    model = json.loads(http(service + "/healthz")[2])["model"]
    assert model["prior_correction"] == 0 and model["rebalanced"] is True, model
    data, png = grey_photo(96, 64), {"Content-Type": "image/png"}
    status, h, own = http(service + "/colorize?temperature=0.3", data, png)
    assert status == 200 and h["x-prior-correction"] == "0", own[:300]
    status, h, corrected = http(service + "/colorize?temperature=0.3&prior_correction=1", data, png)
    assert status == 200 and h["x-prior-correction"] == "1", corrected[:300]
    vivid, dull = (np.asarray(Image.open(io.BytesIO(b))) for b in (own, corrected))
    assert chroma(dull) < chroma(vivid) - 5, (chroma(dull), chroma(vivid))


def test_hints_for_a_model_that_takes_none_are_400(service):
    """The tiny model takes no hints: /healthz says so, and hints (query or form) and /suggest are refused."""
    assert json.loads(http(service + "/healthz")[2])["model"]["hints"] is False
    data, hints = grey_photo(64, 48), json.dumps([{"x": 3, "y": 4, "color": "#aa3300"}])
    png = {"Content-Type": "image/png"}
    for path, headers, body in [
        ("/colorize?hints=" + urllib.parse.quote(hints), png, data),
        ("/colorize", *multipart({"image": ("p.png", data)}, {"hints": hints})),
        ("/suggest?x=3&y=4", png, data),
    ]:
        status, h, out = http(service + path, body, headers)
        assert status == 400 and h["content-type"] == "application/json", (path, out[:300])
        assert "takes no colour hints" in json.loads(out)["error"], (path, out[:300])
    status, _, out = http(service + "/colorize?hints=%5B%5D", data, png)  # an empty list is no hints
    assert status == 200, out[:300]


def test_unknown_paths_and_methods_answer_in_the_same_json_shape(service):
    for path, status in [("/nope", 404), ("/colorize", 405)]:  # a GET where only POST is served
        got, h, out = http(service + path)
        assert got == status and h["content-type"] == "application/json", (path, out[:200])
        assert set(json.loads(out)) == {"error", "status"} and json.loads(out)["status"] == status


def test_slow_clients_get_408_and_never_stall_healthz(service):
    """Clients that announce a body and trickle it in: each is answered (408 after the body deadline,
    or 503 when every upload slot is taken) while /healthz and other requests keep answering."""
    port = int(service.rsplit(":", 1)[1])
    head = b"POST /colorize HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n\x89"
    slow = []
    try:
        for _ in range(SLOW_CLIENTS):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(head)
            slow.append(s)
        time.sleep(0.5)  # all of them inside the service
        t0 = time.monotonic()
        status, _, body = http(service + "/healthz", timeout=10)
        assert status == 200 and time.monotonic() - t0 < BODY_TIMEOUT_S, (status, body[:200])
        status, h, body = http(service + "/colorize?size=64", grey_photo(64, 48), {"Content-Type": "image/png"})
        assert status in (200, 503) and time.monotonic() - t0 < BODY_TIMEOUT_S, (status, body[:200])
        for s in slow:
            s.settimeout(BODY_TIMEOUT_S + 10)
            answer = s.recv(65536)
            while b"\r\n\r\n{" not in answer and (more := s.recv(65536)):  # the JSON may come in a second packet
                answer += more
            assert answer.split(b" ", 2)[1] in (b"408", b"503") and b'"error"' in answer, answer[:300]
    finally:
        for s in slow:
            s.close()


def test_overload_answers_503_and_loses_nothing(service):
    """12 at once against a model queue of 2 working + 1 waiting: every request is answered, some 200,
    some 503 (JSON, Retry-After), none lost or failed otherwise."""
    data = grey_photo(96, 96)

    def one(_):
        return http(service + "/colorize?size=512", data, {"Content-Type": "image/png"}, timeout=120)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(one, range(12)))
    statuses = sorted(a[0] for a in answers)
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    for status, headers, body in answers:
        if status == 503:
            assert body.startswith(b"{"), f"a 503 that is not ours (Serve's proxy?): {body[:200]!r} {dict(headers)}"
            assert json.loads(body)["status"] == 503 and headers.get("retry-after") == "1"


# ----------------------------------------------------------------------------- the page in a browser


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def test_page_in_headless_chromium(service, browser, tmp_path):
    photo = tmp_path / "grey photo.jpg"
    photo.write_bytes(grey_photo(320, 240, "JPEG"))
    browser.get(service + "/")
    wait_connected(browser)
    assert browser.find_element("id", "temperature").get_attribute("value") == str(OWN_TEMPERATURE)
    browser.find_element("id", "file").send_keys(str(photo))
    wait_done(browser, f"temperature {OWN_TEMPERATURE}")
    size = browser.execute_script(
        "const i = document.getElementById('result'); return [i.naturalWidth, i.naturalHeight];"
    )
    assert size == [320, 240]
    assert browser.find_element("id", "no-hints").is_displayed()  # this model takes no colour hints
    assert not browser.find_element("id", "hinting").is_displayed()
    vivid = shown_image(browser)
    assert vivid.shape == (240, 320, 3) and chroma(vivid) > 5, chroma(vivid)
    dl = browser.find_element("id", "download")
    assert dl.is_displayed() and dl.get_attribute("download") == "grey photo-colorized.png"
    assert dl.get_attribute("href").startswith("blob:")
    shot = tmp_path / "serve_page.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot of the page: {shot}")
    # The temperature slider re-colours: a higher temperature is a duller picture.
    browser.execute_script(
        "const t = document.getElementById('temperature'); t.value = '1.5';"
        "t.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    wait_done(browser, "temperature 1.5")
    dull = shown_image(browser)
    assert dull.shape == vivid.shape and chroma(dull) < chroma(vivid) - 1, (chroma(dull), chroma(vivid))
    # The model carries its class weights, so the page offers the prior correction, at its own A.
    correction = browser.find_element("id", "correction")
    assert correction.is_displayed() and correction.get_attribute("value") == "0"
    assert "prior correction 0" in browser.find_element("id", "status").text
    browser.execute_script(
        "const a = document.getElementById('correction'); a.value = '0.5';"
        "a.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    wait_done(browser, "prior correction 0.5")
    duller = shown_image(browser)
    assert chroma(duller) < chroma(dull), (chroma(duller), chroma(dull))


@pytest.mark.parametrize("screen", [(1280, 900), (390, 844)], ids=["laptop", "phone"])
def test_photo_and_result_are_seen_without_scrolling(service, browser, tmp_path, screen):
    width, height = screen
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
    )
    photo = tmp_path / "portrait.jpg"
    photo.write_bytes(grey_photo(800, 1000, "JPEG"))  # tall: the hardest shape to keep in view
    browser.get(service + "/")
    wait_connected(browser)
    browser.find_element("id", "file").send_keys(str(photo))
    wait_done(browser, "800 x 1000")
    boxes = browser.execute_script(
        "const box = (id) => { const r = document.getElementById(id).getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom]; };"
        "return {grey: box('grey'), result: box('result'), temperature: box('temperature'),"
        " window: [0, 0, window.innerWidth, window.innerHeight], scrolled: window.scrollY};"
    )
    shot = tmp_path / f"page-{width}x{height}.png"
    browser.save_screenshot(str(shot))
    left, top, right, bottom = boxes["result"]
    same_box = np.abs(np.subtract(boxes["grey"], boxes["result"])).max() < 0.5  # up to layout rounding
    assert boxes["scrolled"] == 0 and same_box, boxes
    assert 0 <= left and 0 <= top and right <= width and bottom <= height, (boxes, str(shot))
    assert (right - left) * (bottom - top) > 0.25 * width * height * 0.5, boxes  # not shrunk to a stamp
    assert 0 <= boxes["temperature"][1] and boxes["temperature"][3] <= height, boxes  # its control too


def test_page_previews_tiff_keyboard_paste_size_check_examples_split(service, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(service + "/")
    wait_connected(browser)
    # a TIFF: the browser cannot show it, so the grey side comes from the server
    tiff = tmp_path / "scan.tif"
    Image.open(io.BytesIO(grey_photo(200, 150))).save(tiff, "TIFF")
    browser.find_element("id", "file").send_keys(str(tiff))
    wait_done(browser, "200 x 150")
    WebDriverWait(browser, 30).until(
        lambda d: (
            d.execute_script(
                "const g = document.getElementById('grey'); return g.dataset.source === 'server' && g.naturalWidth;"
            )
            == 200
        ),
        message="no grey preview of the TIFF",
    )
    # the split moves by a click on the picture, not only by its slider
    box = browser.find_element("id", "compare")
    browser.execute_script(
        "const c = arguments[0], r = c.getBoundingClientRect();"
        "c.dispatchEvent(new PointerEvent('pointerdown', {clientX: r.left + r.width / 4, clientY: r.top + 5,"
        " pointerId: 1, bubbles: true}));",
        box,
    )
    assert abs(int(browser.find_element("id", "split").get_attribute("value")) - 25) <= 1
    # keyboard: Enter and Space on the drop zone open the file picker
    browser.execute_script("window.picks = 0; document.getElementById('file').click = () => { window.picks += 1; };")
    drop = browser.find_element("id", "drop")
    drop.send_keys(Keys.ENTER)
    drop.send_keys(Keys.SPACE)
    assert browser.execute_script("return window.picks;") == 2
    # paste: a photo on the clipboard is colorized
    paste = """const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(r => r.blob()).then(b => {
          const dt = new DataTransfer();
          dt.items.add(new File([b], arguments[1], {type: b.type || 'image/jpeg'}));
          document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));
          done('ok');
        }).catch(e => done('ERROR ' + e));"""
    names = json.loads(http(service + "/examples")[2])["examples"]
    assert browser.execute_async_script(paste, "examples/" + names[0], "pasted.jpg") == "ok"
    wait_done(browser, "done:")
    assert browser.find_element("id", "download").get_attribute("download") == "pasted-colorized.png"
    # too large for the server: refused in the page, before any upload
    browser.execute_script(
        "const dt = new DataTransfer(); dt.items.add(new File([new Uint8Array(arguments[0])], 'huge.png',"
        " {type: 'image/png'}));"
        "document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));",
        MAX_BYTES + 1,
    )
    status = browser.find_element("id", "status")
    assert "larger than this server takes" in status.text and status.get_attribute("class") == "error"
    # the example photos: one click colorizes one
    buttons = browser.find_elements("css selector", "#examples button")
    assert len(buttons) == len(names)
    buttons[1].click()
    wait_done(browser, "done:")
    assert browser.find_element("id", "download").get_attribute("download").startswith(names[1].rsplit(".", 1)[0])
