"""A clip's stems as small audio files a chat app plays: AAC in M4A, 96 kb/s stereo."""

from __future__ import annotations

import io

import av
import numpy as np

from gpu_worker.audio_types import SAMPLE_RATE, to_stereo
from gpu_worker.mux import AAC_FRAME

STEM_BITRATE = 96_000


def stem_m4a(audio: np.ndarray) -> bytes:
    """(2, n) or (n,) float audio at 48 kHz as M4A bytes (peaks above 1.0 are clipped)."""
    stereo = np.clip(to_stereo(audio), -1.0, 1.0)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ipod", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream("aac", rate=SAMPLE_RATE)
        stream.codec_context.layout = "stereo"
        stream.bit_rate = STEM_BITRATE
        stream.codec_context.options = {"aac_coder": "fast"}
        for start in range(0, stereo.shape[1], AAC_FRAME):
            chunk = np.ascontiguousarray(stereo[:, start:start + AAC_FRAME])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def stems_m4a(stems: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {name: stem_m4a(audio) for name, audio in stems.items()}
