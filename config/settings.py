"""pydantic-settings model: tokens, Redis, database, prices, grants, limits, model preset.

Every variable is read from the environment (prefix ``TALKIES_``) or a `.env` file.
Invalid values stop the process at start with a message naming the variable; a missing
platform token only disables that frontend (see :meth:`Settings.frontend_problem`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "TALKIES_"
Platform = Literal["discord", "telegram"]
IdList = Annotated[frozenset[str], NoDecode]
IMAGE_SIZE = re.compile(r"\s*([0-9]{1,5})\s*[x\u00d7X]\s*([0-9]{1,5})\s*")
MIN_IMAGE_SIDE, MAX_IMAGE_SIDE = 64, 4096
IMAGES_OFF = "off"  # TALKIES_IMAGE_PRESET=off: no image model, no /image


def images_off(image_preset: str) -> bool:
    """Whether an image preset name (any case) turns ``/image`` off."""
    return image_preset.strip().lower() == IMAGES_OFF


class ConfigError(RuntimeError):
    """A setting has an invalid value; the message names the environment variable."""


class Settings(BaseSettings):
    """All configuration of talkies. Field ``x`` is read from ``TALKIES_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # Platforms
    discord_token: SecretStr | None = None
    telegram_token: SecretStr | None = None
    discord_operator_ids: IdList = frozenset()
    telegram_operator_ids: IdList = frozenset()
    telegram_api_url: str | None = None  # a self-hosted Bot API server, e.g. http://host:8081/bot
    telegram_upload_limit: int = Field(default=50_000_000, ge=1_000_000)
    # The administrator right a Telegram group admin needs to grant from the group's pool
    # (the group's creator always may).
    telegram_admin_right: str = Field(default="can_promote_members", pattern=r"^can_[a-z_]+$")
    discord_test_guild_id: int | None = None
    discord_shard_count: int | None = Field(default=None, ge=1)

    # Services
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_path: Path = Path("talkies.sqlite3")

    # Credits
    video_price: int = Field(default=20, ge=0)
    sound_price: int = Field(default=10, ge=0)  # /sound: a soundtrack for the user's own video
    new_audio_price: int = Field(default=5, ge=0)  # the "New audio" button under a clip
    image_price: int = Field(default=2, ge=0)  # /image: one picture from a prompt
    signup_grant: int = Field(default=200, ge=0)
    daily_grant: int = Field(default=100, ge=0)
    max_grant: int = Field(default=100_000, ge=1)
    # Sign-up abuse (0 = off): Discord accounts younger than this get no free credits yet;
    # past this many sign-ups in an hour, new users' sign-up grant waits (others unaffected).
    discord_min_account_age_days: float = Field(default=0, ge=0)
    max_signups_per_hour: int = Field(default=0, ge=0)

    # Limits
    max_prompt_chars: int = Field(default=600, ge=10)
    min_clip_seconds: float = Field(default=1.0, gt=0)
    max_clip_seconds: float = Field(default=10.0, gt=0)
    default_clip_seconds: float = Field(default=5.0, gt=0)
    max_jobs_per_user: int = Field(default=2, ge=1)
    max_jobs_per_server: int = Field(default=6, ge=1)
    job_timeout_s: int = Field(default=600, ge=5)
    max_queue_wait_s: int = Field(default=1800, ge=5)
    max_result_bytes: int = Field(default=60_000_000, ge=100_000)
    # /sound uploads travel through Redis in the job payload: at most 20 MB (Telegram's
    # getFile limit too; gpu_worker.protocol.MAX_SOUND_UPLOAD_BYTES).
    sound_max_upload_bytes: int = Field(default=20_000_000, ge=100_000, le=20_000_000)
    # The /image sizes on offer, "WxH" each (the first is the default); a worker refuses sizes
    # its image preset can't make, so offer only what the workers' preset allows.
    image_sizes: Annotated[tuple[tuple[int, int], ...], NoDecode] = (
        (512, 512), (768, 768), (1024, 1024), (1024, 576), (576, 1024),
    )
    # What a delivered clip's buttons need (its MP4 and stems) is kept this long in Redis,
    # all clips together at most clip_store_max_bytes (oldest dropped first).
    clip_ttl_s: int = Field(default=24 * 3600, ge=60)
    clip_store_max_bytes: int = Field(default=2_000_000_000, ge=1_000_000)

    # Delivery (bot side)
    delivery_deadline_s: float = Field(default=600.0, gt=0)  # finished -> uploaded, or refund
    delivery_request_timeout_s: float = Field(default=120.0, gt=0)  # one upload attempt
    delivery_claim_ttl_s: float = Field(default=60.0, ge=1)  # a dead bot's claim lapses after

    # Workers
    worker_max_jobs: int = Field(default=1, ge=1)
    worker_shutdown_grace_s: int = Field(default=120, ge=0)
    worker_max_tries: int = Field(default=3, ge=1)
    worker_poll_delay_s: float = Field(default=0.02, gt=0, le=5)
    result_ttl_s: int = Field(default=3600, ge=60)

    # Moderation: allow-lists (empty = everywhere) and the operators' global prompt ban list
    allowed_servers: IdList = frozenset()  # Discord guild ids the bot answers in
    allowed_chats: IdList = frozenset()  # Telegram chat ids (groups, or users' private chats)
    banned_terms: Annotated[tuple[str, ...], NoDecode] = ()  # "term, other term, prefix*"

    # Observability: Prometheus /metrics ports (None = off), log format
    metrics_port_discord: int | None = Field(default=None, ge=1, le=65535)
    metrics_port_telegram: int | None = Field(default=None, ge=1, le=65535)
    metrics_port_worker: int | None = Field(default=None, ge=1, le=65535)
    log_format: Literal["text", "json"] = "text"

    # Models
    model_preset: str = "auto"
    # The worker's still-image preset (/image): auto is flux-schnell on CUDA, tiny elsewhere;
    # off: no image model on the workers and no /image on the bots (see images_enabled).
    image_preset: str = "auto"
    # hub: real weights from the Hugging Face cache; random / shallow: random weights built from
    # the real configurations (full size / one block per stack) under the real repo ids.
    weights: Literal["hub", "random", "shallow"] = "hub"
    # CUDA memory policy for the video pipeline: none (all resident), text_encoder (the text
    # encoder waits in RAM between prompts), model (each component on the GPU only while it
    # runs), sequential (layer by layer: least memory, slowest); auto: none on >= 48 GB GPUs,
    # text_encoder below.
    offload: Literal["auto", "none", "text_encoder", "model", "sequential"] = "auto"
    device: str | None = None  # "cuda", "cpu"; None picks CUDA when available
    # Speed-ups (gpu_worker/speedups.py), all off by default: no GPU bench has yet shown them
    # faster (bench/gpu.py --audio-speedups). compile: the video denoiser, compiled and warmed
    # up at worker start; audio_*: MusicGen/AudioGen decoding (dtype "auto" = audiocraft's own:
    # float16 autocast on CUDA, float32 on CPU; compile = the LM step, CUDA graphs on CUDA).
    compile: bool = False
    audio_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    audio_static_cache: bool = False
    audio_compile: bool = False
    audio_batched_cfg: bool = True
    cache_dir: Path = Path.home() / ".cache" / "talkies"
    # Where `talkies up` keeps its local Redis data (AOF), and other state of this host.
    data_dir: Path = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "talkies"

    @field_validator(
        "discord_operator_ids", "telegram_operator_ids", "allowed_servers", "allowed_chats",
        mode="before",
    )
    @classmethod
    def _split_ids(cls, value: object) -> object:
        """Accept "1, 2,3" as well as a list."""
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",") if part.strip()]
            for item in items:
                if not item.lstrip("-").isdigit():
                    raise ValueError(f"{item!r} is not a numeric id")
            return frozenset(items)
        return value

    @field_validator("banned_terms", mode="before")
    @classmethod
    def _split_terms(cls, value: object) -> object:
        """Accept "term one, term two" as well as a list."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("image_sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, value: object) -> object:
        """Accept "512x512, 1024x576" as well as a list of pairs; 1 to 25 distinct sizes (a
        Discord option offers 25 choices at most), each side from 64 to 4096 pixels."""
        if isinstance(value, str):
            sizes = []
            for part in (p.strip() for p in value.split(",") if p.strip()):
                match = IMAGE_SIZE.fullmatch(part)
                if match is None:
                    raise ValueError(f"{part!r} is not a size like 1024x576")
                sizes.append((int(match[1]), int(match[2])))
            value = tuple(sizes)
        if isinstance(value, (tuple, list)):
            pairs = [tuple(pair) for pair in value]
            if not 1 <= len(pairs) <= 25 or len(set(pairs)) != len(pairs):
                raise ValueError("give 1 to 25 different sizes")
            for pair in pairs:
                if len(pair) != 2 or not all(
                    isinstance(side, int) and MIN_IMAGE_SIDE <= side <= MAX_IMAGE_SIDE
                    for side in pair
                ):
                    shown = "x".join(str(side) for side in pair)
                    raise ValueError(
                        f"{shown}: each side must be {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE} pixels"
                    )
            return tuple(pairs)
        return value

    @field_validator("image_preset")
    @classmethod
    def _image_preset_off(cls, value: str) -> str:
        """``OFF``, `` Off `` and the like all read as ``off``."""
        return IMAGES_OFF if images_off(value) else value

    @field_validator("telegram_api_url")
    @classmethod
    def _check_telegram_api_url(cls, value: str | None) -> str | None:
        """A Bot API base URL: http(s)://host[:port]/.../bot (the token and method follow)."""
        if value is None or not value.strip():
            return None
        url = value.strip().rstrip("/")
        expected = "expected the Bot API base ending in /bot, e.g. http://127.0.0.1:8081/bot"
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that isn't a number
        except ValueError:
            raise ValueError(f"not a valid URL; {expected}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL; {expected}")
        if not parts.path.endswith("/bot") or parts.query or parts.fragment:
            raise ValueError(expected)
        return url

    @model_validator(mode="after")
    def _check_clip_bounds(self) -> Settings:
        if not self.min_clip_seconds <= self.default_clip_seconds <= self.max_clip_seconds:
            raise ValueError(
                "clip seconds must satisfy TALKIES_MIN_CLIP_SECONDS <= "
                "TALKIES_DEFAULT_CLIP_SECONDS <= TALKIES_MAX_CLIP_SECONDS"
            )
        return self

    @property
    def images_enabled(self) -> bool:
        """False when TALKIES_IMAGE_PRESET=off: workers load no image model, bots offer no
        /image (and the service refuses one)."""
        return not images_off(self.image_preset)

    def token(self, platform: Platform) -> str | None:
        secret = self.discord_token if platform == "discord" else self.telegram_token
        value = secret.get_secret_value().strip() if secret else ""
        return value or None

    def frontend_problem(self, platform: Platform) -> str | None:
        """Why this frontend cannot start, or None when it can."""
        if self.token(platform) is None:
            return (
                f"{platform} frontend disabled: set {ENV_PREFIX}{platform.upper()}_TOKEN "
                "to enable it"
            )
        return None

    def operator_ids(self, platform: Platform) -> frozenset[str]:
        return self.discord_operator_ids if platform == "discord" else self.telegram_operator_ids


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one readable :class:`ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            if error["loc"]:
                lines.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']} (got {error['input']!r})")
            else:
                lines.append(error["msg"])
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
