"""A private Hugging Face cache that holds random-weight checkpoints under real repo ids.

Real presets load with ``from_pretrained("Lightricks/LTX-Video")`` or
``MusicGen.get_pretrained("facebook/musicgen-medium")``. To run those very calls on a
machine with no hub access, a random-weight build is written into a private cache in the
hub's own layout::

    <home>/hub/models--ORG--NAME/snapshots/<revision>/...   (the files)
    <home>/hub/models--ORG--NAME/refs/main                   (holds <revision>)

and :func:`activate` points huggingface_hub (and so transformers, diffusers and
audiocraft) at ``<home>`` in offline mode. ``<revision>`` is a 40-hex digest of whatever
decides the build (configs, seed), so a changed config is built again, never mixed up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


WEIGHTS_MODES = ("hub", "random", "shallow")


def private_home(cache_dir: str | Path, weights: str) -> Path:
    """The private HF home for a random-weight mode: ``<cache_dir>/hf-<weights>``."""
    if weights not in WEIGHTS_MODES[1:]:
        raise ValueError(f"no private hub cache for weights {weights!r}")
    return Path(cache_dir) / f"hf-{weights}"


def revision_for(spec: str) -> str:
    """A 40-hex revision (the shape of a git commit hash) derived from a build spec."""
    return hashlib.sha1(spec.encode()).hexdigest()


def repo_folder(home: str | Path, repo_id: str) -> Path:
    """``<home>/hub/models--ORG--NAME``: where the hub keeps one model repository."""
    return Path(home) / "hub" / ("models--" + repo_id.replace("/", "--"))


def snapshot_path(home: str | Path, repo_id: str, revision: str) -> Path:
    return repo_folder(home, repo_id) / "snapshots" / revision


def is_published(home: str | Path, repo_id: str, revision: str) -> bool:
    """True when ``revision`` of ``repo_id`` is complete and is what ``main`` points to."""
    refs = repo_folder(home, repo_id) / "refs" / "main"
    try:
        current = refs.read_text().strip()
    except OSError:
        return False
    return current == revision and snapshot_path(home, repo_id, revision).is_dir()


def publish(home: str | Path, repo_id: str, revision: str,
            build: Callable[[Path], None]) -> Path:
    """Build ``repo_id`` once into the private cache; returns its snapshot folder.

    ``build(folder)`` writes the repository's files into an empty staging folder. The
    snapshot appears atomically (rename) and ``refs/main`` is written last, so a process
    racing this one either finds a complete snapshot or builds its own and loses the rename.
    """
    target = snapshot_path(home, repo_id, revision)
    if is_published(home, repo_id, revision):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{revision[:8]}-", dir=target.parent))
    try:
        build(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    refs = repo_folder(home, repo_id) / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    tmp_ref = refs / f".main-{os.getpid()}"
    tmp_ref.write_text(revision)
    os.replace(tmp_ref, refs / "main")
    return target


def activate(home: str | Path) -> None:
    """Make every hub lookup in this process read ``<home>`` only, offline.

    Sets the environment (for child processes and libraries not imported yet) and, since
    huggingface_hub reads it once at import, its constants too.
    """
    home = Path(home)
    os.environ["HF_HOME"] = str(home)
    os.environ["HF_HUB_CACHE"] = str(home / "hub")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.pop("AUDIOCRAFT_CACHE_DIR", None)  # audiocraft would pass it as cache_dir
    from huggingface_hub import constants

    constants.HF_HOME = str(home)
    constants.HF_HUB_CACHE = str(home / "hub")
    constants.HF_HUB_OFFLINE = True
