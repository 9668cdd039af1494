"""``make_image`` in process on the tiny preset: progress at every denoising step, a stop at the
next step once the job is cancelled, and each stage's start and end."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_worker.cancellation import Cancellation, JobCancelled
from gpu_worker.image import ImageModel, load_image_model
from gpu_worker.image_job import ImageRequest, make_image
from gpu_worker.image_presets import IMAGE_PRESETS
from gpu_worker.pipeline import PipelineError, ProgressEvent


@pytest.fixture(scope="module")
def model(tiny_model_cache: Path) -> ImageModel:
    return load_image_model(IMAGE_PRESETS["tiny"], "cpu", tiny_model_cache)


def test_every_denoising_step_reports_progress_in_order(model: ImageModel) -> None:
    events: list[ProgressEvent] = []
    result = make_image(model, ImageRequest("a dog", 32, 32, seed=1), events.append)
    steps = [e for e in events if e.stage == "image"]
    assert [e.fraction for e in steps] == [k / model.preset.steps for k in range(model.preset.steps + 1)]
    percents = [e.percent for e in events]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert events[-1].stage == "image_encode"
    image, encode = result.timings["image"], result.timings["image_encode"]
    assert 0 <= image["start"] <= image["end"] <= encode["start"] <= encode["end"]


def test_a_cancelled_job_stops_at_the_next_denoising_step(model: ImageModel) -> None:
    cancel = Cancellation()
    events: list[ProgressEvent] = []

    def on_progress(event: ProgressEvent) -> None:
        events.append(event)
        if event.stage == "image" and event.fraction > 0:
            cancel.cancel()  # as the worker's loop does when the job times out

    with pytest.raises(JobCancelled) as stopped:
        make_image(model, ImageRequest("a dog", 32, 32, seed=1), on_progress, cancel)
    assert stopped.value.where == "image"
    assert [e.fraction for e in events if e.stage == "image"] == [0.0, 1 / model.preset.steps]
    assert not any(e.stage == "image_encode" for e in events)


def test_an_empty_prompt_is_refused_before_the_model_runs(model: ImageModel) -> None:
    events: list[ProgressEvent] = []
    with pytest.raises(PipelineError) as refused:
        make_image(model, ImageRequest(" \n", 32, 32), events.append)
    assert refused.value.code == "empty_prompt" and events == []
