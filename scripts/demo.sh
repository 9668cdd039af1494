#!/usr/bin/env bash
# Sets everything up, then generates a demo MP4 with audio on this machine (CPU: the tiny
# random-weight preset, so the picture and sound are noise; structure and sync are real).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
out=${1:-demo.mp4}
.venv/bin/talkies generate "a wave crashes on rocks at sunset, calm piano, seagulls" -o "$out" --seconds 5
ffprobe -v error -show_entries stream=codec_type,codec_name,width,height,sample_rate,channels,duration -of compact "$out"
