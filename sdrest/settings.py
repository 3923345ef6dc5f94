"""Settings: typed structs loaded from flags, environment, a TOML file and defaults.

Precedence is flags > environment > config file > defaults. Every leaf setting has one name that
is used everywhere: ``--some-name`` on the command line, ``SDREST_SOME_NAME`` in the environment
and ``some_name`` in the TOML file (load options under ``[load]``, limits under ``[limits]``, and
likewise ``[auth]``, ``[fetch]`` and ``[engine]``).
The four ``STABLE_DIFFUSION_*`` variables of the stable-diffusion.cpp-rest server are honoured too.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from sdrest.errors import InvalidRequestError
from sdrest.schemas.preset import ModelPreset
from sdrest.schemas.request import ImgGenRequest

logger = logging.getLogger(__name__)

WeightType = Literal[
    "default",
    "f32",
    "f16",
    "bf16",
    "q8_0",
    "q5_0",
    "q5_1",
    "q4_0",
    "q4_1",
    "q2_k",
    "q3_k",
    "q4_k",
    "q5_k",
    "q6_k",
    "q8_k",
]
LoraApplyMode = Literal["auto", "immediately", "at_runtime"]
RngType = Literal["cuda", "cpu"]


class LoadOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options that take effect when a model is loaded: changing one reloads the model."""

    threads: int = 0
    """Native threads; 0 = one per physical core (the library's own count, as sd-server uses)."""
    offload_to_cpu: bool = False
    """Keep weights in RAM and move them to VRAM only when needed."""
    clip_on_cpu: bool = False
    vae_on_cpu: bool = False
    control_net_on_cpu: bool = False
    flash_attn: bool = False
    diffusion_flash_attn: bool = False
    diffusion_conv_direct: bool = False
    vae_conv_direct: bool = False
    circular_x: bool = False
    """Seamless images along x (they tile left to right); a request may ask for it alone."""
    circular_y: bool = False
    """Seamless images along y (they tile top to bottom)."""
    mmap: bool = False
    vae_decode_only: bool = False
    """Skip the VAE encoder (txt2img only; img2img and inpainting then fail)."""
    weight_type: WeightType = "default"
    lora_apply_mode: LoraApplyMode = "auto"
    rng: RngType = "cuda"


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What requests may ask for; enforced before anything reaches the queue."""

    min_size: int = 64
    max_size: int = 4096
    max_batch: int = 50
    """Images one request may ask for (the stable-diffusion.cpp-rest spec allows 50)."""
    max_steps: int = 150
    max_queue: int = 64
    max_image_mb: float = 32.0
    """Largest decoded input image, in MiB."""
    max_input_pixels: int = 4096 * 4096
    max_prompt_chars: int = 2000
    """Longest ``prompt`` / ``negative_prompt``, in characters. Text encoders that take the whole
    prompt (Qwen3, Mistral) cost memory in the square of its token count: the native library
    crashes past a few thousand characters of non-Latin text (see the README's limits)."""
    decode_budget_mb: float = 256.0
    """MiB of client image pixels being decoded at one time, over all requests (each image's
    cost read from its header before decoding); past it a request is answered 429 with
    ``Retry-After``. 0 = one request's images at a time."""

    @property
    def max_image_bytes(self) -> int:
        """``max_image_mb`` in bytes."""
        return int(self.max_image_mb * 1024 * 1024)


AuthMode = Literal["none", "jwt", "api-key", "unix", "pam", "optional"]


class AuthSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who may call the server (TOML section ``[auth]``)."""

    auth_mode: AuthMode = "none"
    """none: open; jwt / api-key / unix / pam: credentials required; optional: guests allowed."""
    jwt_secret: str = ""
    """Token signing secret; empty = generated once and kept in the data folder."""
    token_ttl: float = 86400.0
    """Seconds a login token stays valid."""
    trust_unix_user_header: bool = False
    """Trust ``X-Unix-User`` (only behind a proxy that sets it and strips it from clients)."""
    auth_failure_delay: float = 0.5
    """Seconds every failed login waits, so timing tells nothing about which part was wrong."""
    metrics_token: str = ""
    """A bearer token that grants ``GET /metrics`` and nothing else (for a Prometheus scraper);
    empty = only admins may scrape while authentication is on."""


class FetchSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fetching images from URLs (TOML section ``[fetch]``); on unless disabled."""

    allow_url_images: bool = True
    """Accept http(s) URLs where a request takes an image (and ``/api/image/download``);
    public addresses only, every hop checked. ``--no-allow-url-images`` turns it off."""
    fetch_timeout: float = 15.0
    """Seconds for the whole download, redirects included."""
    fetch_max_redirects: int = 3
    fetch_per_minute: int = 30
    """URL images one client address may have fetched per minute (429 past it); 0 = no limit."""


EngineMode = Literal["worker", "in-process"]


class EngineSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where and how the native library runs (TOML section ``[engine]``)."""

    engine_mode: EngineMode = "worker"
    """worker: the library runs in a supervised child process, so a native crash fails one job
    and a running job can be cancelled; in-process: in the server's own process (embedding,
    debugging)."""
    idle_unload: float = 0.0
    """Seconds without work after which loaded models are freed (in worker mode the worker
    process exits and gives all its memory back); 0 = never."""
    memory_budget_mb: float = 0.0
    """Keep several models loaded while their files' sizes add up to at most this many MiB
    (least recently used freed first); 0 = one model at a time."""
    lora_shape_check: bool = True
    """Refuse, at submit time, LoRAs whose tensor shapes do not fit the model (the library would
    abort). Without it a bad LoRA fails its job as ``engine_crashed`` in worker mode."""
    worker_nice: int = 10
    """Niceness added to the engine worker process (worker mode), so the server's event loop
    answers polls at once while the library uses every core; 0 = the server's own priority."""

    engine_workers: int = 1
    """Engine workers this node runs, each with its own engine, all claiming from one queue;
    0 = an API node only (with ``database_url``, workers run elsewhere)."""
    devices: str = ""
    """GPUs for the local workers, one worker each (``0,1``); empty = ``engine_workers`` on
    whatever the engine uses. On a CPU the ``threads`` are split between the workers."""
    node_name: str = ""
    """This node's name in health and ``/api/system``; empty = host name and process id."""
    lease_seconds: float = 30.0
    """Seconds a worker's claim on a running job lasts unless renewed (every third of it); a
    job whose worker stops renewing goes back to the queue after this."""
    heartbeat_seconds: float = 2.0
    """Seconds between a node's heartbeats (and its checks for lapsed leases)."""
    affinity_wait: float = 10.0
    """Seconds an older job may wait while a worker first takes jobs for the model it has
    loaded (no reload); 0 = strict FIFO."""

    @property
    def memory_budget_bytes(self) -> int:
        """``memory_budget_mb`` in bytes."""
        return int(self.memory_budget_mb * 1024 * 1024)


SECRET_SETTINGS: frozenset[str] = frozenset({"jwt_secret", "metrics_token", "database_url"})
"""Settings no endpoint ever shows (config listings, cmd-flags): secrets, and the database
URL (it may carry a password)."""


def _is_base_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host and nothing after its path."""
    parts = urlsplit(url)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.query or parts.fragment or parts.username or parts.password)
    )


def default_data_dir() -> Path:
    """The user's data folder for sdrest (XDG on Linux, the usual places elsewhere)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "sdrest"


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the server and the library need, with defaults that work with no config."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    """The server's address as clients reach it (``https://sd.example.com``, behind a proxy):
    the base of every absolute URL it gives out (``/v1`` ``response_format=url``); empty =
    ``http://{host}:{port}``. Never taken from a request's ``Host`` header."""
    models_dir: str = "models"
    output_dir: str = ""
    """Where job images are written; empty = ``{data_dir}/outputs``."""
    data_dir: str = ""
    """SQLite database and state; empty = the user's data folder."""
    database_url: str = ""
    """``postgresql://user:password@host/db``: jobs, users and keys live in PostgreSQL, shared by
    every node (``sdrest serve`` API nodes and ``sdrest worker`` nodes); empty = SQLite in the
    data folder (one machine)."""
    model: str = ""
    """Default model name; empty = the only model, else the most recently loaded one, else the
    first by name."""
    vae_tiling: bool = False
    """Decode in tiles unless a request says otherwise (bounds VAE memory on small GPUs)."""
    coalesce: bool = True
    """Run waiting txt2img jobs that differ only in their seeds (which follow one another) as
    one native call: the prompt is encoded once. Small images only; see README, Performance."""
    preload: bool = True
    """Start the engine and load the default model at start-up, in the background (health
    answers at once), so the first request does not pay for the load; nothing to do when no
    default model is known."""
    job_ttl: float = 86400.0
    """Seconds a finished job (and its images) is kept before it answers 410 Gone."""
    log_level: str = "info"
    """Level of every log line, the HTTP server's included (debug, info, warning, error)."""
    log_format: Literal["text", "json"] = "text"
    """text: one readable line per record; json: one JSON object per line (see README, Logs)."""
    preview: Literal["none", "proj", "tae", "vae"] = "proj"
    """Live previews while sampling: proj (latent projection, about free), tae (the model's TAESD
    when one is loaded), vae (a full decode: costly), or none."""
    preview_interval: int = 1
    """Steps between previews."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers (from connect, or from the end
    of the previous answer); then it is closed. Slow-loris connections cannot pile up."""
    keep_alive_timeout: float = 5.0
    """Seconds an idle keep-alive connection stays open after an answer."""
    max_connections: int = 512
    """Open connections (and requests) at most; past it new requests are answered 503. Keep it
    under the process's open-file limit."""
    a1111_prompt_loras: bool = False
    """Resolve A1111 ``<lora:name:weight>`` prompt tags on /sdapi/v1 (registry names only)."""
    ui_dir: str = ""
    """Serve this folder at ``/ui/`` instead of the built-in web UI (a static build with its
    ``index.html``); empty = the built-in one."""
    strict_requests: bool = False
    """Refuse (400) request fields /api and /sdcpp/v1 do not know; off: ignore them and list them
    in the answer's ``warnings`` (clients built for a newer server keep working)."""
    load: LoadOptions = msgspec.field(default_factory=LoadOptions)
    limits: Limits = msgspec.field(default_factory=Limits)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    fetch: FetchSettings = msgspec.field(default_factory=FetchSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    presets: dict[str, ModelPreset] = msgspec.field(default_factory=dict)
    config_file: str = ""
    """The TOML file these settings were read from (set by ``load_settings``, not a flag):
    where a model download writes the preset it makes; empty = none."""

    def __post_init__(self) -> None:
        """A ``public_url`` must be an absolute http(s) URL (checked at start-up)."""
        if self.public_url and not _is_base_url(self.public_url):
            raise ValueError(
                f"public_url must be an http(s) URL like https://host[:port][/path],"
                f" not {self.public_url!r}"
            )

    @property
    def public_base_url(self) -> str:
        """The base of absolute URLs: ``public_url``, else the bound address; no trailing /."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def data_path(self) -> Path:
        """The state folder (SQLite, hash cache)."""
        return Path(self.data_dir).expanduser() if self.data_dir else default_data_dir()

    @property
    def output_path(self) -> Path:
        """Where job images are written."""
        return Path(self.output_dir).expanduser() if self.output_dir else self.data_path / "outputs"

    @property
    def models_path(self) -> Path:
        """The models folder."""
        return Path(self.models_dir).expanduser()


# Sections of the TOML file and the struct each one fills.
_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "load": LoadOptions,
    "limits": Limits,
    "auth": AuthSettings,
    "fetch": FetchSettings,
    "engine": EngineSettings,
}
_TOP_LEVEL_SKIP = {*_SECTIONS, "presets", "config_file"}
_REST_ENV = {
    "STABLE_DIFFUSION_HOST": "host",
    "STABLE_DIFFUSION_PORT": "port",
    "STABLE_DIFFUSION_MODELS_DIR": "models_dir",
    "STABLE_DIFFUSION_OUTPUT_DIR": "output_dir",
}


def setting_fields() -> dict[str, tuple[str | None, msgspec.structs.FieldInfo]]:
    """Every leaf setting: name -> (section or None, field info). Used to derive CLI flags."""
    out: dict[str, tuple[str | None, msgspec.structs.FieldInfo]] = {}
    for info in msgspec.structs.fields(Settings):
        if info.name not in _TOP_LEVEL_SKIP:
            out[info.name] = (None, info)
    for section, struct in _SECTIONS.items():
        for info in msgspec.structs.fields(struct):
            out[info.name] = (section, info)
    return out


def _place(tree: dict[str, Any], section: str | None, name: str, value: Any) -> None:
    if section is None:
        tree[name] = value
    else:
        tree.setdefault(section, {})[name] = value


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    fields = setting_fields()
    for var, name in _REST_ENV.items():
        if var in env:
            _place(tree, None, name, env[var])
    for name, (section, _info) in fields.items():
        var = "SDREST_" + name.upper()
        if var in env:
            _place(tree, section, name, env[var])
    return tree


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; nested tables merge key by key instead of replacing."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file (JSON when its name ends in ``.json``, as the
    stable-diffusion.cpp-rest server's ``config.json``); a clear error when it is missing or
    malformed."""
    try:
        if path.suffix.lower() == ".json":
            tree = msgspec.json.decode(path.read_bytes())
            if not isinstance(tree, dict):
                raise InvalidRequestError(f"config file {path} must hold a JSON object")
            return tree
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise InvalidRequestError(f"config file not found: {path}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"config file {path} is not valid JSON: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequestError(f"config file {path} is not valid TOML: {exc}") from exc


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Build settings from (flags > environment > config file > defaults).

    ``flags`` maps leaf setting names (as in :func:`setting_fields`) to values; None values are
    treated as "not given". ``env`` defaults to ``os.environ``. The config file may also be named
    by ``SDREST_CONFIG``.
    """
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    config_path = config_file or env.get("SDREST_CONFIG")
    tree: dict[str, Any] = read_config_file(Path(config_path)) if config_path else {}
    presets = tree.pop("presets", {})
    if isinstance(presets, dict):
        # A preset's name is its table key; the struct wants it inside as well.
        presets = {name: {"name": name, **dict(body)} for name, body in presets.items()}
    tree = deep_merge(tree, _env_values(env))
    fields = setting_fields()
    flag_tree: dict[str, Any] = {}
    for name, value in flags.items():
        if name not in fields:
            raise InvalidRequestError(f"unknown setting: {name}")
        _place(flag_tree, fields[name][0], name, value)
    tree = deep_merge(tree, flag_tree)
    tree["presets"] = presets
    tree["config_file"] = str(config_path) if config_path else ""
    try:
        # strict=False lets environment strings ("8080", "true") become ints and bools.
        settings = msgspec.convert(tree, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"invalid settings: {exc}") from exc
    for preset in settings.presets.values():
        try:  # a bad default must fail at start-up, not as a 400 on every request
            msgspec.convert(preset.defaults, ImgGenRequest)
        except msgspec.ValidationError as exc:
            raise InvalidRequestError(f"preset {preset.name!r} defaults: {exc}") from exc
    _check_database_url(settings.database_url)
    return settings


def _check_database_url(url: str) -> None:
    """A ``--database-url`` this installation can use, or a start-up error that says why: the
    PostgreSQL driver is the ``postgres`` extra, absent from a plain install."""
    if not url:
        return
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise InvalidRequestError(
            "database_url must be a postgresql:// URL (leave it unset for the embedded SQLite)"
        )
    if importlib.util.find_spec("psycopg") is None:
        raise InvalidRequestError(
            "database_url needs the PostgreSQL driver: pip install 'sdrest[postgres]'"
        )


def public_settings(settings: Settings) -> dict[str, Any]:
    """The settings as plain data without :data:`SECRET_SETTINGS`: what endpoints may show."""
    tree: dict[str, Any] = msgspec.to_builtins(settings)
    for name, (section, _info) in setting_fields().items():
        if name in SECRET_SETTINGS:
            (tree[section] if section else tree).pop(name, None)
    return tree
