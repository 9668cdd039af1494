"""Every real preset (video, and image where its configuration is stored) end to end on CPU
with ``--weights shallow``: the real pipeline classes,
real widths, channels, heads, vocabularies and compression factors, one block per stack.

Each run is the user's command, ``talkies generate PROMPT -o OUT --preset P --weights shallow
--seconds S --size WxH``, in a subprocess: the random checkpoints are built once into a
private Hugging Face cache under their real repo ids (kept in pytest's cache between runs),
loaded by the same ``from_pretrained`` / ``get_pretrained`` calls as real weights, then video
+ music + ambience + SFX + mix + mux, checked with ffprobe. To keep the suite quick each run
makes the preset's shortest clip at a small size its rules allow, with 2 denoising steps
where the preset's schedule is not fixed (the distilled one runs its 8 timesteps).

Disk: all the shallow builds together take about 11 GB (each keeps its real vocabularies,
e.g. umT5's 256k x 4096 embedding), more than a CI machine may have free. So each test removes
its own video or image repository when it ends (:func:`shallow_repo`); only the audio
repositories, about 1.6 GB shared by every run, stay in pytest's cache between runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from PIL import Image

from gpu_worker import hub_cache, video_weights
from gpu_worker.image_presets import IMAGE_PRESETS
from gpu_worker.presets import PRESETS, frame_count
from tests.conftest import ffprobe

# preset -> (size, extra CLI arguments)
SHALLOW_RUNS = {
    "ltx-distilled": ("64x64", []),
    "ltx": ("64x64", ["--steps", "2"]),
    "wan": ("32x32", ["--steps", "2"]),
    "cogvideox": ("32x32", ["--steps", "2"]),
}


@pytest.fixture(scope="session")
def shallow_cache(request: pytest.FixtureRequest) -> Path:
    """Shallow random checkpoints, built once and kept in pytest's cache across runs."""
    return Path(request.config.cache.mkdir("talkies-shallow-models"))


@pytest.fixture
def shallow_repo(shallow_cache: Path) -> Iterator[Callable[[str], Path]]:
    """``shallow_repo(repo_id)`` is that repository's folder in the private cache; every folder
    asked for is removed when the test ends, pass or fail, so the builds never pile up."""
    home = hub_cache.private_home(shallow_cache, "shallow")
    asked: list[Path] = []

    def folder(repo_id: str) -> Path:
        asked.append(hub_cache.repo_folder(home, repo_id))
        return asked[-1]

    yield folder
    for path in asked:
        shutil.rmtree(path, ignore_errors=True)


def run_shallow(cache: Path, cwd: Path, *args: str) -> None:
    """The user's command, ``talkies ARGS --weights shallow --device cpu``, offline against the
    private cache in ``cache``; fails the test with the end of its stderr unless it exits 0."""
    env = {**os.environ, "TALKIES_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    env.pop("TALKIES_WEIGHTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", *args, "--weights", "shallow", "--device", "cpu"],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_real_preset_has_a_shallow_run() -> None:
    assert set(SHALLOW_RUNS) == {name for name, preset in PRESETS.items() if not preset.is_tiny}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHALLOW_RUNS))
def test_shallow_preset_writes_a_valid_mp4(name: str, shallow_cache: Path, shallow_repo: Callable[[str], Path],
                                           tmp_path: Path) -> None:
    preset = PRESETS[name]
    repo = shallow_repo(preset.video_repo)
    size, extra = SHALLOW_RUNS[name]
    seconds = preset.min_seconds
    output = tmp_path / f"{name}.mp4"
    run_shallow(shallow_cache, tmp_path, "generate", "a dog runs on the beach, waves crash",
                "-o", str(output), "--preset", name, "--seconds", f"{seconds:g}", "--size", size,
                *extra)

    info = ffprobe(output)
    streams = {s["codec_type"]: s for s in info["streams"]}
    width, height = (int(v) for v in size.split("x"))
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (width, height)
    assert int(streams["video"]["nb_frames"]) == frame_count(preset, seconds)
    assert streams["audio"]["codec_name"] == "aac"
    assert float(info["format"]["duration"]) == pytest.approx(frame_count(preset, seconds) / preset.fps, abs=0.1)

    # Loaded by its real repo id from the private cache, not from some local folder.
    assert (repo / "refs" / "main").is_file()


def test_cli_refuses_a_size_outside_the_rules(tmp_path: Path, shallow_cache: Path) -> None:
    env = {**os.environ, "TALKIES_CACHE_DIR": str(shallow_cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "generate", "a cat", "-o", str(tmp_path / "x.mp4"),
         "--preset", "wan", "--weights", "shallow", "--size", "250x250"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 2
    assert "multiples of 16" in done.stderr.replace("\n", " ")
    assert not (tmp_path / "x.mp4").exists()


# image preset -> extra CLI arguments; each runs at its smallest side
SHALLOW_IMAGE_RUNS = {
    "flux-schnell": [],  # its own 4 steps
    "qwen-image": ["--steps", "2"],
}
# qwen-image's shallow build peaks at about 10 GB of RAM and 150 s on 2 cores (its text
# encoder's 152k x 3584 embedding alone is 2.2 GB): run only where asked, e.g. before changing
# its configuration. flux-schnell, the default GPU image preset, always runs.
HEAVY = {"qwen-image"}
RUN_HEAVY = os.environ.get("TALKIES_TEST_HEAVY") == "1"


def test_every_stored_image_preset_has_a_shallow_run() -> None:
    stored = {name for name, preset in IMAGE_PRESETS.items()
              if not preset.is_tiny and preset.repo in video_weights._specs()}
    assert set(SHALLOW_IMAGE_RUNS) == stored


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.skipif(
        name in HEAVY and not RUN_HEAVY, reason="heavy (about 10 GB of RAM): TALKIES_TEST_HEAVY=1"))
    for name in SHALLOW_IMAGE_RUNS
])
def test_shallow_image_preset_writes_a_valid_png(name: str, shallow_cache: Path,
                                                shallow_repo: Callable[[str], Path], tmp_path: Path) -> None:
    preset = IMAGE_PRESETS[name]
    repo = shallow_repo(preset.repo)
    side = preset.min_side
    output = tmp_path / f"{name}.png"
    run_shallow(shallow_cache, tmp_path, "image", "a lighthouse at dusk", "-o", str(output),
                "--preset", name, "--size", f"{side}x{side}", *SHALLOW_IMAGE_RUNS[name])
    with Image.open(output) as image:
        image.load()
        assert (image.format, image.size) == ("PNG", (side, side))
    assert (repo / "refs" / "main").is_file()
