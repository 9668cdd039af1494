"""Every workaround audiocraft 1.3 (and the torch audio stack) needs on a current torch.

audiocraft 1.3 was written for torch 2.1, xformers < 0.0.23 and a torchaudio that
matches torch. Here it runs --no-deps beside whatever torch the host has. Each
patch below is narrow, idempotent, applied only when the problem is present,
and says why it exists. Nothing else in talkies patches third-party code: go
through :func:`prepare_torch_audio_stack` (before importing diffusers or
transformers models) and :func:`import_audiocraft` (instead of ``import
audiocraft``).
"""

from __future__ import annotations

import importlib.machinery
import logging
import os
import pickle
import sys
import threading
import types
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_stack_ready = False
_audiocraft_ready = False

SPACY_MODEL = "en_core_web_sm"


def prepare_torch_audio_stack() -> None:
    """Make torchaudio and xformers importable and quiet. Idempotent, thread-safe.

    Call before importing diffusers/transformers pipelines: transformers'
    ``audio_utils`` imports torchaudio whenever it is installed, so a broken
    torchaudio breaks ``from diffusers import LTXPipeline`` too.
    """
    global _stack_ready
    with _lock:
        if _stack_ready:
            return
        _import_torchaudio()
        _import_xformers_quietly()
        _stack_ready = True


def configure_cpu_backend() -> None:
    """On CPU, run convolutions without oneDNN (mkldnn), and keep library progress bars quiet.

    Why: with oneDNN, the first transposed 1-D convolution of an audiocraft (EnCodec/SEANet)
    decode in a process took 9-20 s here (primitive creation for large strides), against
    0.1-0.4 s with PyTorch's own kernels; the tiny video VAE loses about 1-2 s per clip
    instead. Turning it off process-wide (not around each call) keeps outputs deterministic,
    since the music thread and the video thread never switch kernels under each other.
    """
    import torch

    torch.backends.mkldnn.enabled = False
    _quiet_progress_bars()


def _quiet_progress_bars() -> None:
    """diffusers/transformers print tqdm bars while loading; talkies reports its own progress."""
    try:
        import diffusers.utils.logging as diffusers_logging
        import transformers.utils.logging as transformers_logging
    except ImportError:
        return
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def import_audiocraft() -> types.ModuleType:
    """Apply every audiocraft workaround once and return ``audiocraft.models``.

    ``audiocraft.models`` exposes ``MusicGen``, ``AudioGen``, ``builders`` and
    ``loaders``.
    """
    global _audiocraft_ready
    prepare_torch_audio_stack()
    with _lock:
        if not _audiocraft_ready:
            _patch_spacy_load()
            import audiocraft.models as models

            _patch_trusted_hub_checkpoint_load(models.loaders)
            _patch_seedable_sampling()
            _audiocraft_ready = True
    import audiocraft.models as models

    return models


# --- (a) torchaudio -------------------------------------------------------


def _import_torchaudio() -> None:
    """Import torchaudio, without its compiled extension if that cannot load.

    Why: torchaudio 2.11 on PyPI is a CUDA build. Beside a CPU torch (or any
    torch it was not built for) its ``_torchaudio.so`` fails to load
    (``libc10_cuda.so`` missing) and ``import torchaudio`` raises OSError.
    audiocraft (chroma, audio_utils) and transformers (audio_utils) import it
    at module level, but only use its pure-Python parts (transforms,
    functional.resample). Pointing ``_LIB_DIR`` at a missing folder makes the
    second import take torchaudio's own "extension not found" path. Applied
    only when the first import fails: hosts with a matching torchaudio keep
    the real one.
    """
    try:
        import torchaudio  # noqa: F401
        return
    except ImportError:
        return  # not installed: nothing to fix, callers that need it will say so
    except OSError as first_error:
        utils = sys.modules.get("torchaudio._extension.utils")
        if utils is None:
            raise
        log.info("torchaudio extension does not load here (%s); using its pure-Python parts",
                 first_error)
        utils._LIB_DIR = Path("/nonexistent/torchaudio-lib")  # type: ignore[attr-defined]
        import torchaudio  # noqa: F401,F811


# --- (c) xformers -----------------------------------------------------------


def _import_xformers_quietly() -> None:
    """Import xformers with its build-mismatch warning demoted to DEBUG.

    Why: audiocraft's transformer does ``from xformers import ops`` at import
    time, but with the default 'torch' attention backend it never calls an
    xformers kernel. A wheel built for another torch logs a multi-line
    "WARNING[XFORMERS] can't load C++/CUDA extensions" that is irrelevant to
    us. When xformers is missing altogether (GPU hosts don't need it), a small
    stub stands in for the two names audiocraft touches.
    """
    if "xformers" in sys.modules:
        return
    xlog = logging.getLogger("xformers")
    previous = xlog.level
    xlog.setLevel(logging.ERROR)
    try:
        import xformers.ops  # noqa: F401
    except ImportError:
        _install_xformers_stub()
    finally:
        xlog.setLevel(previous)


class _LowerTriangularMask:
    """Stand-in marker: audiocraft only checks ``attn_mask is not None`` on the torch backend."""


def _install_xformers_stub() -> None:
    """Register ``xformers`` / ``xformers.ops`` stubs (with ``__spec__`` so find_spec works).

    audiocraft uses ``ops.unbind`` (same as ``torch.unbind``) in its custom
    attention, ``ops.LowerTriangularMask`` as a causal marker with
    ``memory_efficient=True`` (real checkpoints), and
    ``ops.memory_efficient_attention`` only on the 'xformers' backend.
    """
    import torch

    def memory_efficient_attention(*_: Any, **__: Any) -> Any:
        raise RuntimeError("xformers is not installed; audiocraft must use the 'torch' backend")

    package = types.ModuleType("xformers")
    package.__spec__ = importlib.machinery.ModuleSpec("xformers", None, is_package=True)
    package.__path__ = []  # type: ignore[attr-defined]
    ops = types.ModuleType("xformers.ops")
    ops.__spec__ = importlib.machinery.ModuleSpec("xformers.ops", None)
    ops.unbind = torch.unbind  # type: ignore[attr-defined]
    ops.LowerTriangularMask = _LowerTriangularMask  # type: ignore[attr-defined]
    ops.memory_efficient_attention = memory_efficient_attention  # type: ignore[attr-defined]
    package.ops = ops  # type: ignore[attr-defined]
    sys.modules["xformers"] = package
    sys.modules["xformers.ops"] = ops
    log.info("xformers not installed: using a stub (audiocraft runs on torch attention)")


# --- (b) spacy --------------------------------------------------------------


def _patch_spacy_load() -> None:
    """Fall back to a blank English spaCy pipeline when en_core_web_sm is missing.

    Why: audiocraft's ``LUTConditioner(tokenizer="whitespace")`` (the debug /
    tiny text conditioner) calls ``spacy.load("en_core_web_sm")`` and, when
    that raises, ``spacy.cli.download`` — a network call, and the model is not
    on PyPI. A blank English pipeline has the tokenizer and stop words it
    needs. It has no lemmatizer, though, and every lemma would be "" (all words
    hashing to one bin: the text would stop conditioning the model), so a tiny
    component sets each lemma to the lower-cased word. Only that model name is
    patched, and only when loading it fails.
    """
    import spacy

    if getattr(spacy.load, "_talkies_fallback", False):
        return
    original_load = spacy.load

    def load(name: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original_load(name, *args, **kwargs)
        except OSError:
            if str(name) != SPACY_MODEL:
                raise
            log.info("spaCy model %s not installed: using blank English + lower-case lemmas",
                     SPACY_MODEL)
            return _blank_english()

    load._talkies_fallback = True  # type: ignore[attr-defined]
    spacy.load = load


def _blank_english() -> Any:
    import spacy
    from spacy.language import Language

    name = "talkies_lowercase_lemma"
    if not Language.has_factory(name):

        @Language.component(name)
        def lowercase_lemma(doc: Any) -> Any:
            for token in doc:
                token.lemma_ = token.lower_
            return doc

    nlp = spacy.blank("en")
    nlp.add_pipe(name)
    return nlp


# --- torch.load weights_only ---------------------------------------------------


def _patch_trusted_hub_checkpoint_load(loaders: types.ModuleType) -> None:
    """Retry a hub checkpoint with ``weights_only=False`` if the safe unpickler refuses it.

    Why: since torch 2.6 ``torch.load`` defaults to ``weights_only=True``;
    audiocraft 1.3 calls it without the argument and some official checkpoints
    (reported for audiogen-medium, audiocraft PR #534) pickle more than
    tensors. The safe load is always tried first (our tiny checkpoints pass
    it); only checkpoints resolved from a Hugging Face repo id — the official
    ones a preset names — are retried unsafely, never local files or URLs.
    Not verifiable on machines without hub access.
    """
    original = loaders._get_state_dict
    if getattr(original, "_talkies_fallback", False):
        return

    def get_state_dict(file_or_url_or_id: Any, filename: str | None = None,
                       device: Any = "cpu", cache_dir: str | None = None) -> Any:
        try:
            return original(file_or_url_or_id, filename, device, cache_dir)
        except pickle.UnpicklingError:
            source = str(file_or_url_or_id)
            if os.path.exists(source) or source.startswith("https://") or filename is None:
                raise
            return _load_hub_checkpoint_unsafely(loaders, source, filename, device, cache_dir)

    get_state_dict._talkies_fallback = True  # type: ignore[attr-defined]
    loaders._get_state_dict = get_state_dict


def _load_hub_checkpoint_unsafely(loaders: types.ModuleType, repo_id: str, filename: str,
                                  device: Any, cache_dir: str | None) -> Any:
    import audiocraft
    import torch
    from huggingface_hub import hf_hub_download

    log.warning("checkpoint %s/%s needs full unpickling; loading it as trusted", repo_id, filename)
    path = hf_hub_download(repo_id=repo_id, filename=filename,
                           cache_dir=cache_dir or loaders.get_audiocraft_cache_dir(),
                           library_name="audiocraft", library_version=audiocraft.__version__)
    return torch.load(path, map_location=device, weights_only=False)


# --- sampling with a per-call generator ------------------------------------------------
# audiocraft samples every token with torch.multinomial and no generator, i.e. from the
# process-wide RNG. Two generations in two threads (music and ambience, started together)
# would then interleave their draws and neither would be reproducible from its seed. Its
# own sampling helper already takes a ``generator``; this patch passes one that belongs to
# the calling thread while :func:`seeded_sampling` is active. Without it, nothing changes.

_sampling = threading.local()


def _patch_seedable_sampling() -> None:
    from audiocraft.utils import utils

    original = utils.multinomial
    if getattr(original, "_talkies_seedable", False):
        return

    def multinomial(input: Any, num_samples: int, replacement: bool = False, *,
                    generator: Any = None) -> Any:
        if generator is None:
            generator = _thread_generator(input.device)
        return original(input, num_samples, replacement, generator=generator)

    multinomial._talkies_seedable = True  # type: ignore[attr-defined]
    utils.multinomial = multinomial  # sample_top_k/top_p look it up at call time


def _thread_generator(device: Any) -> Any:
    seed = getattr(_sampling, "seed", None)
    if seed is None:
        return None
    generators = _sampling.generators
    key = str(device)
    if key not in generators:
        import torch

        generators[key] = torch.Generator(device=device).manual_seed(seed)
    return generators[key]


class seeded_sampling:  # noqa: N801 - used like a function: ``with seeded_sampling(seed):``
    """Inside this block, audiocraft's sampling in this thread draws from its own generator
    seeded with ``seed``: the same seed gives the same audio whatever other threads do."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        import_audiocraft()
        _sampling.seed, _sampling.generators = self.seed, {}

    def __exit__(self, *exc: object) -> None:
        _sampling.seed, _sampling.generators = None, {}

