"""Benchmark: how well ``/sound`` puts its effects on the events of the synthetic sync set.

Not a test. Run: ``python bench/sync.py [--preset tiny] [--device cpu] [--seed 0]``.

Each scene of the deterministic sync set (:func:`tests.camera_clips.sync_set`: pans, zooms,
hand-held shake, flat walls, fades, steady motion, rapid hops, flashes and cuts, at 24 and
30 fps) is written as an MP4 and run through the ``/sound`` path
(:func:`gpu_worker.sound_job.make_sound`) with its stems. Printed side by side, per scene and
over the set, for what ``/sound`` did and for a baseline of the same effects placed at random
times:

* event recall and precision within +-1 frame (the events ``/sound`` put effects on, or the
  random times, against the true events);
* the median and worst offset: the attack heard in the SFX stem nearest each found true event
  (:func:`gpu_worker.placement.onset_near`, 5 ms step) minus that event's time;
* AV-Align of the SFX stem alone against the picture (:mod:`gpu_worker.av_align`, as in the
  TempoTokens paper).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/queue.py
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

from gpu_worker import av_align  # noqa: E402
from gpu_worker.audio import generate_sfx_batch  # noqa: E402
from gpu_worker.audio_types import SAMPLE_RATE  # noqa: E402
from gpu_worker.mix import mix  # noqa: E402
from gpu_worker.mux import encode_mp4  # noqa: E402
from gpu_worker.pipeline import SFX_SECONDS, load_models, sfx_descriptions  # noqa: E402
from gpu_worker.placement import onset_near, pan_of, place_sfx  # noqa: E402
from gpu_worker.sound_job import SoundRequest, make_sound  # noqa: E402
from gpu_worker.video_input import VideoLimits  # noqa: E402
from tests.camera_clips import match_events, sync_set  # noqa: E402


class Tally:
    """Hits, found and true events, offsets and AV-Align scores of one way of placing."""

    def __init__(self) -> None:
        self.hits = self.found = self.truth = 0
        self.offsets_ms: list[float] = []
        self.scores: list[float] = []

    def add(self, truth: dict[int, str], found: list[int], stem: np.ndarray, fps: float,
            peaks: list[float]) -> tuple[float, float, float]:
        pairs = match_events(truth, found)
        self.hits += len(pairs)
        self.found += len(found)
        self.truth += len(truth)
        offsets = [1000 * abs(onset_near(stem, t / fps) - t / fps) for t, _ in pairs]
        self.offsets_ms += offsets
        onsets = av_align.audio_onsets(stem, SAMPLE_RATE)
        _, score = av_align.av_align(onsets, peaks, fps)
        self.scores.append(score)
        return len(pairs) / max(1, len(truth)), max(offsets, default=0.0), score

    def row(self) -> list[str]:
        recall = self.hits / max(1, self.truth)
        precision = self.hits / max(1, self.found)
        median = statistics.median(self.offsets_ms) if self.offsets_ms else float("nan")
        worst = max(self.offsets_ms, default=float("nan"))
        return [f"{recall:.3f}", f"{precision:.3f}", f"{median:.1f} ms", f"{worst:.1f} ms",
                f"{statistics.fmean(self.scores):.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    models = load_models(args.preset, args.device)
    print(f"preset {models.preset.name} on {models.device}, loaded in {time.perf_counter() - start:.1f} s")
    scenes = sync_set()
    ours, chance = Tally(), Tally()
    rng = np.random.default_rng(args.seed)
    print(f"{'scene':34} {'true':>4} {'found':>5} {'recall':>6} {'worst':>8} {'AV-Align':>8} {'random':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, clip) in enumerate(scenes.items()):
            folder = Path(tmp) / f"scene{i}"
            folder.mkdir()
            source, output = folder / "in.mp4", folder / "out.mp4"
            encode_mp4(clip.frames, clip.fps, None, source, preset="veryfast")
            result = make_sound(models, SoundRequest(source, "", args.seed, VideoLimits(max_seconds=10.0)),
                                output)
            placed = result.clip
            duration = placed.analysis.duration
            frames, fps = av_align.gray_frames(output)
            peaks = [f / fps for f in av_align.visual_peaks(av_align.flow_trajectory(frames))]
            events = [p.event for p in placed.sfx]
            found = [e.frame for e in events]
            recall, worst, score = ours.add(clip.events, found, placed.mix.stems["sfx"], fps, peaks)

            texts = [text for _, text in sfx_descriptions(placed.plan, events)]
            clips = generate_sfx_batch(models.sfx, texts, SFX_SECONDS, args.seed + 2) if texts else []
            times = sorted(rng.uniform(0.05, duration - 0.05, len(clips)))
            n = round(duration * SAMPLE_RATE)
            track = place_sfx(clips, times, n, pans=[pan_of(e.x) for e in events]) if clips else None
            random_stem = mix(None, None, track, placed.plan.dynamics, duration).stems["sfx"]
            _, _, random_score = chance.add(clip.events, [round(t * fps) for t in times], random_stem, fps, peaks)
            print(f"{name:34} {len(clip.events):4d} {len(found):5d} {recall:6.2f} {worst:6.1f} ms "
                  f"{score:8.3f} {random_score:7.3f}")

    print()
    labels = ["event recall (+-1 frame)", "event precision (+-1 frame)", "median offset",
              "worst offset", "AV-Align of the SFX stem (mean)"]
    print(f"{'over ' + str(len(scenes)) + ' scenes':32} {'/sound':>10} {'random times':>13}")
    for label, a, b in zip(labels, ours.row(), chance.row()):
        print(f"{label:32} {a:>10} {b:>13}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
