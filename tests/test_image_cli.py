"""``talkies image`` on the tiny preset: a real image file of the asked size and format, and
bad input refused with a clear message and exit code 2 before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bot.cli import app


@pytest.fixture
def talkies_image(tiny_model_cache: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = {"TALKIES_CACHE_DIR": str(tiny_model_cache), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TALKIES_WEIGHTS": "hub"}

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["image", *args, "--device", "cpu"], env=env)

    return run


@pytest.mark.parametrize(("name", "size", "pil_format"), [
    ("out.png", "64x48", "PNG"),
    ("out.jpg", "32x80", "JPEG"),
    ("out.webp", "48x48", "WEBP"),
])
def test_the_cli_writes_an_image_of_the_asked_size_and_format(
    talkies_image, tmp_path: Path, name: str, size: str, pil_format: str,  # type: ignore[no-untyped-def]
) -> None:
    output = tmp_path / name
    result = talkies_image("a red kite over the sea", "-o", str(output), "--preset", "tiny",
                           "--size", size, "--seed", "5")
    assert result.exit_code == 0, result.output
    with Image.open(output) as image:
        image.load()
        assert image.format == pil_format
        assert image.size == tuple(int(v) for v in size.split("x"))
    assert f"wrote {output}" in result.output.replace("\n", "")


def test_an_image_over_max_bytes_is_written_as_webp_or_jpeg(talkies_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ("waves", "--preset", "tiny", "--size", "64x64", "--seed", "2")
    assert talkies_image(*args, "-o", str(tmp_path / "full.png")).exit_code == 0
    limit = (tmp_path / "full.png").stat().st_size - 1
    result = talkies_image(*args, "-o", str(tmp_path / "small.png"), "--max-bytes", str(limit))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "small.png").exists()
    [written] = [p for p in tmp_path.iterdir() if p.stem == "small"]
    assert written.suffix in (".webp", ".jpg") and written.stat().st_size <= limit
    with Image.open(written) as image:
        assert image.format == {".webp": "WEBP", ".jpg": "JPEG"}[written.suffix]
        assert image.size == (64, 64)


@pytest.mark.parametrize(("args", "needle"), [
    (["", "--preset", "tiny"], "The prompt is empty"),
    (["   ", "--preset", "tiny"], "The prompt is empty"),
    (["a cat", "--preset", "tiny", "--size", "60x64"],
     "Image size must be a multiple of 16 pixels a side, between 16 and 1024 (asked 60x64)."),
    (["a cat", "--preset", "tiny", "--size", "2048x2048"], "between 16 and 1024 (asked 2048x2048)"),
    (["a cat", "--preset", "tiny", "--size", "0x0"], "(asked 0x0)"),
    (["a cat", "--preset", "tiny", "--size", "big"], "size 'big' is not WIDTHxHEIGHT"),
    (["a cat", "--preset", "midjourney"], "unknown image preset 'midjourney'"),
    (["a cat", "--preset", "OFF"], "image preset 'off' makes no image (it turns /image off on "
                                   "a bot); pick one of auto, tiny, flux-schnell, qwen-image"),
    (["a cat", "--preset", "tiny", "--weights", "real"], "--weights must be one of"),
    (["a cat", "--preset", "tiny", "--steps", "0"], "steps must be at least 1, got 0"),
])
def test_bad_input_is_refused_clearly_with_exit_code_2(
    talkies_image, tmp_path: Path, args: list[str], needle: str,  # type: ignore[no-untyped-def]
) -> None:
    output = tmp_path / "x.png"
    result = talkies_image(*args, "-o", str(output))
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split()), result.output
    assert not output.exists()


@pytest.mark.parametrize(("output", "needle"), [
    ("x.gif", "can't tell the format from 'x.gif'"),
    ("missing/x.png", "its folder is missing"),
])
def test_an_unwritable_or_unknown_output_is_refused(
    talkies_image, tmp_path: Path, output: str, needle: str,  # type: ignore[no-untyped-def]
) -> None:
    result = talkies_image("a cat", "--preset", "tiny", "-o", str(tmp_path / output))
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split())
