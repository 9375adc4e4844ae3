"""``vaekit serve``: the explorer's endpoints answer right, refuse bad requests with a 4xx message
and keep serving, listen on 127.0.0.1 unless told, and the page works in a real browser."""

from __future__ import annotations

import base64
import contextlib
import inspect
import io
import socket
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("starlette", reason="vaekit serve needs starlette (pip install -e '.[test]')")
pytest.importorskip("uvicorn", reason="vaekit serve needs uvicorn (pip install -e '.[test]')")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx (pip install -e '.[test]')")

import warnings  # noqa: E402

from PIL import Image  # noqa: E402

with warnings.catch_warnings():  # starlette's TestClient warns that it would rather have httpx2
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient  # noqa: E402

import vaekit  # noqa: E402
from browser import browser, console_errors, failed_requests  # noqa: E402,F401  (a fixture)
from vaekit.cli import build_parser, main  # noqa: E402
from vaekit.config import ModelConfig, TrainConfig  # noqa: E402
from vaekit.data.prepare import load_examples, undo_transform  # noqa: E402
from vaekit.errors import VaekitError  # noqa: E402
from vaekit.runs import load_run  # noqa: E402
from vaekit.serve import DEFAULT_HOST, MAX_BODY, listen, make_app, make_server, serve  # noqa: E402

COLUMNS = ["age", "score", "income"]


@pytest.fixture(scope="module")
def image_run(digits_run):
    return load_run(digits_run.path)


@pytest.fixture(scope="module")
def image_client(image_run):
    return TestClient(make_app(image_run))


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A run on a small table whose columns have very different scales (so that data units show)."""
    rng = np.random.default_rng(0)
    age = rng.normal(50, 10, 120)
    score, income = rng.normal(0, 1, 120), age * 100 + rng.normal(0, 50, 120)
    folder = tmp_path_factory.mktemp("table")
    path = folder / "people.csv"
    path.write_text(",".join(COLUMNS) + "\n" + "".join(f"{a:.3f},{s:.3f},{i:.3f}\n" for a, s, i in zip(age, score, income)))
    vaekit.train(ModelConfig(latent_dim=2, hidden=(16,)), TrainConfig(data=str(path), epochs=1, device="cpu"),
                 folder / "run", progress=False)
    return load_run(folder / "run")


@pytest.fixture(scope="module")
def table_client(table_run):
    return TestClient(make_app(table_run))


def _png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data))


def _png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _data_url_png(url: str) -> Image.Image:
    head, _, data = url.partition(",")
    assert head == "data:image/png;base64"
    return _png(base64.b64decode(data))


# -- the endpoints -----------------------------------------------------------------------------------

def test_the_page_is_one_self_contained_document(image_client):
    r = image_client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "http://" not in page and "https://" not in page and "//cdn" not in page  # nothing from elsewhere
    assert 'fetch("decode"' in page and 'fetch("encode"' in page and 'type="file"' in page


def test_info_orders_the_units_by_activity(image_client, image_run):
    info = image_client.get("/info").json()
    assert info["kind"] == "image" and info["shape"] == [1, 8, 8] and info["latent_dim"] == 4
    assert sorted(info["units"]) == [0, 1, 2, 3]
    assert info["activity"] == sorted(info["activity"], reverse=True)
    assert info["map"]["x_unit"] == info["units"][0] and info["map"]["y_unit"] == info["units"][1]
    assert _png(image_client.get("/map.png").content).size == tuple(info["map"]["size"])


def test_decode_gives_the_decoded_image_as_a_png_of_the_right_size(image_client, image_run):
    info = image_client.get("/info").json()
    z = [0.5, -1.0, 2.0, 0.0]
    r = image_client.post("/decode", json={"z": z})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = _png(r.content)
    assert img.size == (256, 256) and img.mode == "L"  # 8 x 8 scaled by 32
    assert list(info["output_size"]) == [256, 256]
    # its pixels are the model's decoded mean at z, each a 32 x 32 block
    with torch.inference_mode():
        mean = image_run.model.decode(torch.tensor([z])).mean[0, 0]
    got = np.asarray(img, dtype=np.float64)[::32, ::32] / 255
    assert np.abs(got - mean.numpy()).max() <= 0.5 / 255 + 1e-6
    other = image_client.post("/decode", json={"z": [-2.0, 1.0, 0.0, 0.0]}).content
    assert other != r.content


def test_decoded_table_values_are_in_the_data_units(table_client, table_run):
    z = [1.0, -0.5]
    values = table_client.post("/decode?format=json", json={"z": z}).json()
    with torch.inference_mode():
        expected = undo_transform(table_run.info["data"], table_run.model.decode(torch.tensor([z])).mean)[0]
    assert values["columns"] == COLUMNS
    assert np.allclose(values["values"], expected.numpy(), rtol=1e-5)
    assert values["values"][2] > 1000  # income, in the data's units, not standardized
    r = table_client.post("/decode", json={"z": z})
    info = table_client.get("/info").json()
    assert r.status_code == 200 and _png(r.content).size[::-1] == tuple(info["output_size"])


BAD_DECODES = [
    ({"content": b"{\"z\": [0, 0,", "headers": {"content-type": "application/json"}}, 400, "malformed JSON"),
    ({"content": b"{\"z\": [NaN, 0, 0, 0]}", "headers": {"content-type": "application/json"}}, 400, "finite"),
    ({"json": {"z": [0.0, 0.0]}}, 422, "holds 2 values; the model has 4"),
    ({"content": b"{\"z\": [0, 0, Infinity, 0]}", "headers": {"content-type": "application/json"}}, 400, "finite"),
    ({"content": b"{\"z\": [0, 0, 1e999, 0]}", "headers": {"content-type": "application/json"}}, 422, "z[2] is inf"),
    ({"json": {"z": [0, "1", 0, 0]}}, 422, "z[1]"),
    ({"json": {"z": [0, 10**400, 0, 0]}}, 422, "z[1] is inf"),
    ({"json": {"z": [[0], 0, 0, 0]}}, 422, "not a number"),
    ({"json": [0, 0, 0, 0]}, 422, "JSON object"),
    ({"json": {"z": [0, 0, 0, 0], "y": 3}}, 422, "not conditional"),
    ({"json": {"q": 1}}, 422, "unknown field"),
    ({"content": b"z=0,0,0,0", "headers": {"content-type": "text/plain"}}, 415, "application/json"),
    ({"content": b"x" * (MAX_BODY + 1), "headers": {"content-type": "application/json"}}, 413, "bytes"),
]


@pytest.mark.parametrize("request_, status, message", BAD_DECODES)
def test_a_bad_decode_request_gets_a_4xx_message_and_the_server_keeps_serving(image_client, request_, status, message):
    r = image_client.post("/decode", **request_)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert "Traceback" not in r.text
    assert image_client.post("/decode", json={"z": [0, 0, 0, 0]}).status_code == 200


def test_a_body_over_the_cap_without_a_length_is_cut_off(image_client):
    def chunks():  # sent chunked: no Content-Length to refuse it by
        for _ in range(MAX_BODY // 2**20 + 2):
            yield b"x" * 2**20

    r = image_client.post("/decode", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["error"]
    assert image_client.post("/decode", json={"z": [0, 0, 0, 0]}).status_code == 200


@pytest.mark.parametrize("upload, status, message", [
    (("notes.txt", b"not an image at all", "text/plain"), 415, "not a PNG or JPEG"),
    (("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png"), 415, "not a PNG or JPEG"),
    (("a.gif", None, "image/gif"), 415, "send a PNG or JPEG"),
])
def test_an_upload_that_is_no_png_or_jpeg_is_refused(image_client, upload, status, message):
    name, data, kind = upload
    if data is None:
        buf = io.BytesIO()
        Image.new("L", (8, 8)).save(buf, format="GIF")
        data = buf.getvalue()
    r = image_client.post("/encode", files={"file": (name, data, kind)})
    assert r.status_code == status and message in r.json()["error"]
    assert image_client.post("/encode", content=b"{}", headers={"content-type": "application/json"}).status_code == 415
    assert image_client.post("/encode", data={"row": "1,2"}).status_code == 422  # no file field
    good = image_client.post("/encode", files={"file": ("d.png", _png_bytes(np.zeros((8, 8), np.uint8)), "image/png")})
    assert good.status_code == 200


def test_an_uploaded_image_is_resized_and_encoded_as_the_model_reads_it(image_client, image_run):
    digit = load_examples(image_run.train_config, "test").x[3]  # (1, 8, 8) in [0, 1]
    pixels = (digit[0].numpy() * 255).round().astype(np.uint8)
    big = np.kron(pixels, np.ones((4, 4), np.uint8))  # 32 x 32: the server resizes it back to 8 x 8
    rgb = np.stack([big] * 3, axis=-1)  # and makes it grey
    r = image_client.post("/encode", files={"file": ("digit.png", _png_bytes(rgb), "image/png")})
    assert r.status_code == 200, r.text
    result = r.json()
    with torch.inference_mode():
        x = torch.from_numpy(pixels).float().div(255).reshape(1, 1, 8, 8)
        expected = image_run.model.encode(x).mean[0]
    assert len(result["z"]) == len(result["scale"]) == 4
    assert np.allclose(result["z"], expected.numpy(), atol=0.05)  # bilinear down-sizing blurs block edges a little
    assert _data_url_png(result["input"]).size == (256, 256)
    assert _data_url_png(result["reconstruction"]).size == (256, 256)
    raw = image_client.post("/encode", content=_png_bytes(rgb), headers={"content-type": "image/png"})  # the bare body
    assert raw.status_code == 200 and np.allclose(raw.json()["z"], result["z"])


def test_a_table_row_is_read_and_transformed_as_training_data_were(table_client, table_run):
    info = table_client.get("/info").json()
    header, row = info["example_row"].strip().split("\n")
    assert header.split(",") == COLUMNS
    values = [float(v) for v in row.split(",")]
    for body in (row, info["example_row"], "income,age,score\n" + ",".join(map(str, [values[2], values[0], values[1]]))):
        r = table_client.post("/encode", content=body.encode(), headers={"content-type": "text/csv"})
        assert r.status_code == 200, r.text
        result = r.json()
        standardized = (torch.tensor([values]) - torch.tensor(table_run.info["data"]["transform"]["mean"])) \
            / torch.tensor(table_run.info["data"]["transform"]["std"])
        with torch.inference_mode():
            qz = table_run.model.encode(standardized.float())
            recon = undo_transform(table_run.info["data"], table_run.model.decode(qz.mean).mean)[0]
        assert np.allclose(result["z"], qz.mean[0].numpy(), atol=1e-4)
        assert np.allclose(result["input_values"], values, rtol=1e-5)
        assert np.allclose(result["values"], recon.numpy(), rtol=1e-4)
        assert _data_url_png(result["reconstruction"]).size[0] > 0
    tabs = table_client.post("/encode", content=row.replace(",", "\t").encode(), headers={"content-type": "text/csv"})
    assert tabs.status_code == 200 and np.allclose(tabs.json()["z"], result["z"])
    form = table_client.post("/encode", data={"row": row})  # as the page sends it
    assert form.status_code == 200 and np.allclose(form.json()["z"], result["z"])


@pytest.mark.parametrize("row, message", [
    ("1,2", "the row has 2 values; the run's table has 3 columns"),
    ("age,score\n1,2", "missing 'income'"),
    ("age,score,income\n1,2,3\n4,5,6", "send one row"),
    ("1,2,x", "holds text ('x')"),
    ("1,2,nan", "missing value"),
    ("", "the row is empty"),
])
def test_a_wrong_table_row_gets_a_4xx_message_and_the_server_keeps_serving(table_client, row, message):
    r = table_client.post("/encode", content=row.encode(), headers={"content-type": "text/csv"})
    assert r.status_code == 422 and message in r.json()["error"], r.text
    assert "row.csv" not in r.json()["error"] and "vaekit-serve" not in r.json()["error"]  # no temporary file's name
    assert table_client.post("/encode", content=b"1,2,3", headers={"content-type": "text/csv"}).status_code == 200


def test_an_internal_failure_is_a_json_500_and_the_server_keeps_serving(image_run, monkeypatch):
    app = make_app(image_run)
    client = TestClient(app, raise_server_exceptions=False)
    explorer = app.state.explorer
    real = explorer.decode_png
    monkeypatch.setattr(explorer, "decode_png", lambda z, y: 1 / 0)
    r = client.post("/decode", json={"z": [0, 0, 0, 0]})
    assert r.status_code == 500 and "ZeroDivisionError" in r.json()["error"] and "Traceback" not in r.text
    monkeypatch.setattr(explorer, "decode_png", real)
    assert client.post("/decode", json={"z": [0, 0, 0, 0]}).status_code == 200


# -- listening --------------------------------------------------------------------------------------

def test_the_default_host_is_the_loopback_address():
    args = build_parser().parse_args(["serve", "some-run"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    assert DEFAULT_HOST == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(listen).parameters["host"].default == "127.0.0.1"


@contextlib.contextmanager
def running(app, **listen_options):
    """uvicorn serving ``app`` on a background thread, on a free port; stopped at the end."""
    sock = listen(port=0, **listen_options)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield server, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def test_a_started_server_listens_on_127_0_0_1_and_survives_bad_requests(image_run):
    import httpx

    with running(make_app(image_run)) as (server, url):
        assert [s.getsockname()[0] for srv in server.servers for s in srv.sockets] == ["127.0.0.1"]
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.post("/decode", content=b"{oops", headers={"content-type": "application/json"}).status_code == 400
            nan = b'{"z": [NaN, 0, 0, 0]}'
            assert http.post("/decode", content=nan, headers={"content-type": "application/json"}).status_code == 400
            assert http.post("/encode", files={"file": ("x.png", b"nope", "image/png")}).status_code == 415
            with contextlib.suppress(httpx.HTTPError):  # the server may close before the whole body is sent
                r = http.post("/decode", content=b"x" * (MAX_BODY + 1), headers={"content-type": "application/json"})
                assert r.status_code == 413
            r = http.post("/decode", json={"z": [0, 0, 0, 0]})
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_listen_refuses_a_taken_port_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(VaekitError, match=f"--port {port}: cannot listen there"):
            listen(port=port)


def test_the_cli_refuses_a_missing_run_and_missing_packages_in_one_line(tmp_path, capsys, monkeypatch):
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run directory" in err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs uvicorn" in err and "pip install 'vaekit[serve]'" in err
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["serve", "r", "--port", "70000"])
    assert e.value.code == 2


# -- a real browser ----------------------------------------------------------------------------------

def test_the_page_in_a_browser_redraws_as_a_slider_moves_and_encodes_an_upload(browser, image_run, tmp_path):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    console_errors(browser), failed_requests(browser)  # only this page's from here
    wait = WebDriverWait(browser, 30)
    with running(make_app(image_run)) as (_, url):
        browser.get(url + "/")
        decoded = lambda: browser.find_element(By.ID, "decoded").get_attribute("src") or ""  # noqa: E731
        wait.until(lambda _: decoded().startswith("data:image/png"))
        info = browser.execute_script("return INFO")
        sliders = browser.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")
        assert len(sliders) == min(16, info["latent_dim"]) == 4
        assert browser.execute_script("return document.getElementById('map').naturalWidth") == info["map"]["size"][0]

        # move the most active unit's slider: the decoded image changes
        before = decoded()
        first = f"s{info['units'][0]}"
        browser.execute_script(
            "const s = document.getElementById(arguments[0]); s.value = 2.5;"
            "s.dispatchEvent(new Event('input', {bubbles: true}));", first)
        wait.until(lambda _: decoded() != before)
        assert browser.execute_script("return z[arguments[0]]", info["units"][0]) == 2.5
        assert _data_url_png(decoded()).size == (256, 256)

        # a click in the map's upper-left quarter sets the two mapped units there
        before = decoded()
        the_map = browser.find_element(By.ID, "map")
        width = the_map.size["width"]
        scale = width / info["map"]["size"][0]
        left, top, side, _ = info["map"]["box"]
        dx = (left + side * 0.25) * scale - width / 2  # offsets from the element's centre
        dy = (top + side * 0.25) * scale - the_map.size["height"] / 2
        ActionChains(browser).move_to_element_with_offset(the_map, int(dx), int(dy)).click().perform()
        wait.until(lambda _: decoded() != before)
        zx, zy = browser.execute_script("return [z[INFO.map.x_unit], z[INFO.map.y_unit]]")
        assert zx == pytest.approx(-1.5, abs=0.1) and zy == pytest.approx(1.5, abs=0.1)

        # upload an image through the file input: its encoding and reconstruction appear
        digit = (load_examples(image_run.train_config, "test").x[0, 0].numpy() * 255).round().astype(np.uint8)
        upload = tmp_path / "digit.png"
        Image.fromarray(np.kron(digit, np.ones((3, 3), np.uint8))).save(upload)
        browser.find_element(By.ID, "file").send_keys(str(upload))
        wait.until(lambda _: (browser.find_element(By.ID, "recon").get_attribute("src") or "").startswith("data:image/png"))
        assert browser.find_element(By.ID, "result").is_displayed()
        assert "latent means" in browser.find_element(By.ID, "codes").text
        assert _data_url_png(browser.find_element(By.ID, "recon").get_attribute("src")).size == (256, 256)
        assert browser.find_element(By.ID, "error").text == ""

        shot = tmp_path / "explorer.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        assert console_errors(browser) == []
        assert failed_requests(browser) == []
