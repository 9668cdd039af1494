"""GPU worker: turns one prompt into a video with synchronized audio (see docs/architecture.md)."""
