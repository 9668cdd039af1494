"""Optional speed-ups: audiocraft's token-by-token decoding, and compiling the video model.

audiocraft decodes 50 tokens per second of audio, one LM forward per token. Stock it already
batches classifier-free guidance (conditional and unconditional rows in one forward) and, on
CUDA, autocasts to float16; its KV cache grows by concatenation (a copy of every key and value
each step, and a new shape each step, so no CUDA graph can replay it). Each speed-up below is
its own setting (see :class:`AudioSpeedups`), applied to a loaded model by
:func:`apply_audio_speedups`:

* ``dtype``: ``auto`` (audiocraft's own: float16 autocast on CUDA, float32 on CPU), ``float32``,
  ``float16`` or ``bfloat16`` (the LM's weights are cast, and autocast runs in that type).
* ``static_cache``: a preallocated KV cache of the model's whole window, written in place, with
  a mask over the unwritten part: every step has the same shapes. Exact in float32.
* ``compile``: ``torch.compile`` of the LM's forward, with the static cache (its fixed shapes);
  CUDA: ``reduce-overhead``, i.e. CUDA graphs; CPU: inductor's C++ code, if a compiler exists.
* ``batched_cfg``: off runs the two guidance passes one after the other (audiocraft's
  ``two_step_cfg``), for comparison only.

What can't run here falls back to the plain path with one log line; the call returns
what is in effect. ``TALKIES_COMPILE`` compiles the video transformer (:func:`compile_video`).
Compiling happens in the warm-up at worker start (``pipeline.load_models``), never inside a
job, with inductor's caches on disk (:func:`configure_compile_cache`).
"""

from __future__ import annotations

import logging
import os
import shutil
import types
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

AudioDtype = Literal["auto", "float32", "float16", "bfloat16"]
COMPILE_LIMIT = 64
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class AudioSpeedups:
    """Which speed-ups to use (``TALKIES_AUDIO_*`` settings); all off is audiocraft's own path."""

    dtype: AudioDtype = "auto"
    static_cache: bool = False
    compile: bool = False
    batched_cfg: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> AudioSpeedups:
        return cls(dtype=settings.audio_dtype, static_cache=settings.audio_static_cache,
                   compile=settings.audio_compile, batched_cfg=settings.audio_batched_cfg)

    @property
    def label(self) -> str:
        parts = [f"dtype={self.dtype}"]
        parts += [name for name in ("static_cache", "compile") if getattr(self, name)]
        if not self.batched_cfg:
            parts.append("two_step_cfg")
        return ",".join(parts)


PLAIN = AudioSpeedups()


def apply_audio_speedups(engine: Any, wanted: AudioSpeedups) -> AudioSpeedups:
    """Switch ``wanted`` on for ``engine`` (a loaded MusicGen/AudioGen); return what took effect.

    Call once, right after loading (the dtype cast is not undone).
    """
    from audiocraft.utils.autocast import TorchAutocast

    device = next(engine.lm.parameters()).device
    in_effect = wanted
    if wanted.dtype == "float16" and device.type != "cuda":
        log.info("audio speed-up dtype=float16 needs CUDA; running float32 on %s", device)
        in_effect = replace(in_effect, dtype="float32")
    if in_effect.dtype == "float32":
        engine.autocast = TorchAutocast(enabled=False)
    elif in_effect.dtype in ("float16", "bfloat16"):
        dtype = DTYPES[in_effect.dtype]
        engine.lm.to(dtype)
        engine.autocast = TorchAutocast(enabled=True, device_type=device.type, dtype=dtype)
    if in_effect.compile and not in_effect.static_cache:
        log.info("audio speed-up compile needs fixed shapes: static_cache switched on too")
        in_effect = replace(in_effect, static_cache=True)
    if in_effect.static_cache:
        problem = _static_cache_problem(engine.lm, in_effect)
        if problem:
            log.info("audio speed-ups static_cache and compile off: %s", problem)
            in_effect = replace(in_effect, static_cache=False, compile=False)
        else:
            _install_static_cache(engine.lm, _window_steps(engine))
    if in_effect.compile:
        problem = _compile_problem(device)
        if problem:
            log.info("audio speed-up compile off: %s", problem)
            in_effect = replace(in_effect, compile=False)
        else:
            _compile_lm(engine.lm, cuda_graphs=device.type == "cuda")
    return in_effect


def _compile_lm(lm: Any, cuda_graphs: bool) -> None:
    """Replace ``lm.forward`` by its compiled self (the eager one is kept for :func:`uncompile_audio`).

    Shapes are the static cache's, but for the text's length: each batch size and the first
    step of a generation get their own graphs, hence the higher limit.
    """
    from torch import _dynamo

    _raise_recompile_limit()
    eager = lm.forward
    compiled = torch.compile(eager, mode="reduce-overhead" if cuda_graphs else None)

    def forward(sequence: torch.Tensor, conditions: Any, condition_tensors: Any = None,
                stage: int = -1) -> torch.Tensor:
        for tensors in (condition_tensors or {}).values():  # text length varies by prompt:
            for tensor in tensors:  # one graph for all lengths (but 1), not one per length
                _dynamo.maybe_mark_dynamic(tensor, 1)
        if cuda_graphs:  # each call is a new step: outputs of the last replay are consumed
            torch.compiler.cudagraph_mark_step_begin()
        return compiled(sequence, conditions, condition_tensors, stage)

    lm._talkies_eager_forward = eager
    lm.forward = forward


def uncompile_audio(engine: Any) -> None:
    """Back to the eager forward (a compile that failed at warm-up)."""
    eager = getattr(engine.lm, "_talkies_eager_forward", None)
    if eager is not None:
        engine.lm.forward = eager
        del engine.lm._talkies_eager_forward


def configure_compile_cache(cache_dir: str | Path) -> Path:
    """Keep inductor's caches (FX graphs, kernels) on disk under ``cache_dir``, across restarts.

    A ``TORCHINDUCTOR_CACHE_DIR`` set by the operator wins (torch itself sets its default,
    a folder in /tmp, when something imports inductor: that one is replaced).
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    folder = Path(cache_dir) / "inductor"
    folder.mkdir(parents=True, exist_ok=True)
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def compile_video(pipeline: Any, device: str | torch.device) -> bool:
    """Compile the video pipeline's denoiser in place (shapes dynamic: any clip length).

    Returns whether it is compiled; where it can't be, says why in one log line.
    """
    problem = _compile_problem(torch.device(device))
    denoiser = getattr(pipeline, "transformer", None) or getattr(pipeline, "unet", None)
    if problem or denoiser is None:
        log.info("video compile off: %s", problem or "the pipeline has no transformer/unet")
        return False
    _raise_recompile_limit()
    denoiser.compile(dynamic=True)
    return True


def uncompile_video(pipeline: Any) -> None:
    """Back to the eager denoiser (a compile that failed at warm-up)."""
    denoiser = getattr(pipeline, "transformer", None) or getattr(pipeline, "unet", None)
    if denoiser is not None:
        denoiser._compiled_call_impl = None  # what nn.Module.compile set


def _raise_recompile_limit() -> None:
    from torch import _dynamo

    _dynamo.config.recompile_limit = max(_dynamo.config.recompile_limit, COMPILE_LIMIT)


def _compile_problem(device: torch.device) -> str | None:
    if device.type == "cuda":
        return None
    if device.type != "cpu":
        return f"torch.compile is not set up for {device.type} here"
    compiler = os.environ.get("CXX") or "c++"
    if shutil.which(compiler) is None and shutil.which("g++") is None:
        return "no C++ compiler on this CPU host (inductor needs one)"
    return None


# --- static KV cache ---------------------------------------------------------------


def _window_steps(engine: Any) -> int:
    """Keys one generation can write: the model's window plus the codebook pattern's delays."""
    return int(engine.max_duration * engine.frame_rate) + 2 * engine.lm.num_codebooks + 2


def _self_attentions(lm: Any) -> list[Any]:
    return [layer.self_attn for layer in lm.transformer.layers]


def _static_cache_problem(lm: Any, speedups: AudioSpeedups) -> str | None:
    if not speedups.batched_cfg:
        return "two-step CFG swaps streaming states, which a shared in-place cache can't follow"
    for attention in _self_attentions(lm):
        if not attention.custom or not attention.causal or attention.cross_attention:
            return "the LM's self-attention is not audiocraft's custom causal one"
        if attention.rope is not None or attention.kv_repeat != 1 or attention.past_context is not None:
            return "rotary embeddings, repeated KV heads and a limited past are not supported"
        if attention.qk_layer_norm:
            return "q/k layer norms are not supported"
    return None


def _install_static_cache(lm: Any, capacity: int) -> None:
    for attention in _self_attentions(lm):
        attention._talkies_capacity = capacity
        attention.forward = types.MethodType(_static_forward, attention)
    # A position counter per generation: StreamingModule.streaming() clears it on exit.


def _static_forward(self: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    key_padding_mask: Any = None, need_weights: bool = False, attn_mask: Any = None,
                    average_attn_weights: bool = True, is_causal: bool = False) -> tuple[torch.Tensor, None]:
    """Causal self-attention of a streaming step, keys and values kept in a fixed-size buffer.

    Outside streaming (never during generation) audiocraft's own forward runs.
    """
    cls = type(self)
    if not self._is_streaming:
        return cls.forward(self, query, key, value, key_padding_mask, need_weights, attn_mask,
                           average_attn_weights, is_causal)
    batch, steps, _ = query.shape
    dtype = query.dtype
    projected = F.linear(query, self.in_proj_weight, self.in_proj_bias)
    q, k, v = projected.view(batch, steps, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    keys, values = _buffers(self, batch, k)
    state = self._streaming_state
    if "position" not in state:  # a generation starts (streaming() clears the state at its end)
        state["position"] = _position(self, query.device)
        state["position"].zero_()
    positions = state["position"] + torch.arange(steps, device=query.device)
    keys.index_copy_(2, positions, k)
    values.index_copy_(2, positions, v)
    state["position"].add_(steps)  # in place, on a module buffer: a CUDA graph may replay it
    key_positions = torch.arange(keys.shape[2], device=query.device)
    valid = key_positions.view(1, -1) <= positions.view(-1, 1)  # [steps, capacity]
    if self.attention_as_float32:
        q, keys, values = q.float(), keys.float(), values.float()
    if self.memory_efficient:
        x = F.scaled_dot_product_attention(q, keys, values, attn_mask=valid)
    else:  # audiocraft's einsum attention, same operations in the same order
        q = q / q.shape[-1] ** 0.5
        scores = torch.einsum("bhtd,bhkd->bhtk", q, keys)
        scores = scores + torch.where(valid, torch.zeros([], device=q.device, dtype=scores.dtype),
                                      torch.full([], float("-inf"), device=q.device, dtype=scores.dtype))
        weights = torch.softmax(scores, dim=-1).to(values)
        x = torch.einsum("bhtk,bhkd->bhtd", weights, values)
    x = x.to(dtype).transpose(1, 2).reshape(batch, steps, -1)
    return self.out_proj(x), None


def _position(attention: Any, device: torch.device) -> torch.Tensor:
    """The module's write position, a buffer (a static input to compiled graphs)."""
    position = getattr(attention, "_talkies_position", None)
    if position is None or position.device != device:
        attention.register_buffer("_talkies_position", torch.zeros((), dtype=torch.long, device=device),
                                  persistent=False)
    return attention._talkies_position


def _buffers(attention: Any, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The module's key and value buffers ([batch, heads, capacity, head_dim]), one pair per
    batch size, kept across generations (so compiled graphs and CUDA graphs keep them)."""
    name = f"_talkies_keys_{batch}"
    keys = getattr(attention, name, None)
    if keys is None or keys.dtype != like.dtype or keys.device != like.device:
        shape = (batch, like.shape[1], attention._talkies_capacity, like.shape[3])
        attention.register_buffer(name, like.new_zeros(shape), persistent=False)
        attention.register_buffer(f"_talkies_values_{batch}", like.new_zeros(shape), persistent=False)
    return getattr(attention, name), getattr(attention, f"_talkies_values_{batch}")
