"""All of dmr's settings, in one place, with one documented precedence.

From lowest to highest:

1. the defaults below (:class:`Settings` field defaults), with DMR's ``MODELS_PATH`` and
   ``MODEL_RUNNER_REGISTRY_MIRRORS`` honoured as the defaults of ``store`` and ``registry_mirrors``;
2. the TOML file ``conf/dmr.toml`` in the project root, or the file named by ``DMR_CONFIG``;
3. ``DMR_<FIELD>`` environment variables (``DMR_STORE=/srv/models``, ``DMR_DEVICES=cpu``), parsed
   into the field's type;
4. keyword overrides given to :func:`load_settings` (tests, ``create_app(settings=...)``).

The same settings object is read by the web workers, the inference pool and the CLI, so a value
means the same thing everywhere.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "conf" / "dmr.toml"


def _default_store() -> str:
    return str(Path.home() / ".dmr" / "models")


@dataclass(frozen=True)
class Settings:
    """Every tunable, with its default. Field names are the TOML keys and ``DMR_`` env suffixes."""

    #: Where the content-addressed model store lives (DMR's ``MODELS_PATH`` is honoured too).
    store: str = field(default_factory=_default_store)
    #: Address the HTTP server binds (``host:port``, or ``unix:/path`` for a Unix socket).
    bind: str = "127.0.0.1:12434"
    #: Permissions of the Unix socket of a ``unix:`` bind, in octal (``0660``: owner and group, e.g.
    #: nginx's user in dmr's group); set as gunicorn creates it and again once it listens (serving.py).
    bind_mode: str = "0660"
    #: Number of gunicorn gevent web workers.
    web_workers: int = 2
    #: Niceness added to web workers, so token relaying never steals a core from decoding.
    web_nice: int = 10
    #: Directory for the inference pool's Unix sockets (default: a private dir under the store).
    pool_dir: str = ""
    #: Devices that get one inference worker each: ``cpu``, or ``cuda:0,cuda:1``.
    devices: str = "cpu"
    #: CPU threads per inference worker; 0 = the number of physical cores.
    threads: int = 0
    #: Engine used when the request does not name one.
    default_engine: str = "llama.cpp"
    #: Context window for loaded models; 0 = the model's own (capped by ``max_context``).
    context_size: int = 0
    #: Upper bound for the context window picked automatically from the model.
    max_context: int = 4096
    #: Largest accepted request body, in bytes (DMR: 10 MiB).
    max_body: int = 10 * 1024 * 1024
    #: Shortest gap (s) between two frames of streamed text after the first, to coalesce wake-ups
    #: (0 = every token). The first text and the end always leave at once (worker.ChunkSender).
    stream_flush_interval: float = 0.05
    #: Memory (bytes) each device may fill with loaded models; 0 = auto (80% of MemAvailable for
    #: the CPU, of the GPU's memory for a GPU). Loading past it evicts idle models (LRU).
    memory_budget: int = 0
    #: Requests that may wait for one loaded model while all its parallel slots are busy; more get a
    #: 503 with Retry-After. 512 as Ollama's OLLAMA_MAX_QUEUE: a waiting request holds no KV memory.
    max_queue: int = 512
    #: Requests one loaded model decodes together (llama-server's ``--parallel``); engines that
    #: cannot batch run one at a time. Each slot gets the full context (KV memory × parallel).
    #: 2 by default: a second request no longer waits, both decode faster in all, a lone one as
    #: fast as with 1 (bench/parallel.py); 4 gains more only with 4 at once, at twice the KV memory.
    parallel: int = 2
    #: MiB of host memory each loaded model may fill with the KV states of prompts its slots had to
    #: give up (llama-server's ``--cache-ram``): a conversation whose slot another one took resumes
    #: from there instead of evaluating its prompt again. 0 = off.
    prompt_cache_mb: int = 512
    #: How long an idle model stays loaded: ``5m``, ``30s``, ``-1`` (forever), ``0`` (unload at once).
    keep_alive: str = "5m"
    #: Log level for dmr's own loggers.
    log_level: str = "info"
    #: Layers one pull downloads at once (containerd's and DMR's default: 3).
    pull_concurrency: int = 3
    #: Registry mirrors tried before the origin, comma-separated: ``https://mirror.example`` (for
    #: Docker Hub, as DMR's ``MODEL_RUNNER_REGISTRY_MIRRORS``, honoured too) or ``registry=mirror``.
    registry_mirrors: str = ""

    # -- admission: API keys, CORS and limits (dmr_core/admission.py; docs/deploy.md) --------------
    #: API keys, comma-separated; when any (or ``api_keys_file``) is set every API route needs one.
    api_keys: str = field(default="", repr=False)
    #: A file of API keys, one per line (``#`` starts a comment); read at start-up.
    api_keys_file: str = ""
    #: Exact paths answered without a key even when keys are set, comma-separated.
    auth_open_paths: str = "/,/metrics"
    #: Browser origins allowed (exact ``scheme://host[:port]``), comma-separated, on top of DMR's
    #: defaults (``http(s)://localhost``, ``127.0.0.1``, ``0.0.0.0``); ``*`` allows every origin.
    #: DMR's ``DMR_ORIGINS`` is honoured as its default.
    cors_origins: str = ""
    #: Most prompt tokens one generation request may have; 0 = no limit (only the context's).
    max_prompt_tokens: int = 0
    #: Inference requests one API key may have running or waiting at once; 0 = no limit.
    max_concurrent_per_key: int = 0

    # -- metrics and access logs (dmr_core/metrics.py, dmr_core/accesslog.py; docs/operations.md) ----
    #: Turn ``GET /metrics`` off (a 404) and count nothing; DMR's ``DISABLE_METRICS=1`` is honoured too.
    disable_metrics: bool = False
    #: Access-log lines: ``text`` (logfmt ``key=value`` pairs) or ``json`` (one JSON object per line).
    log_format: str = "text"
    #: Where access-log lines go: ``-`` (standard output), a file (appended to), or ``off``.
    access_log: str = "-"

    # -- hostile input (dmr_core/web_worker.py; docs/operations.md) ---------------------------------
    #: Seconds a client socket may stay idle within a request (a body that stops arriving, a client
    #: that stops reading) before its connection is dropped; 0 = wait for ever.
    client_timeout: float = 60.0

    # -- the server's log (dmr_core/server_log.py; `dmr logs`, GET /logs) ---------------------------
    #: A file the server appends everything it prints to, instead of standard output/error (gunicorn's
    #: log, the pool's, a ``-`` access log), served by ``GET /logs`` to ``dmr logs``; empty: no ``/logs``.
    log_file: str = ""

    # -- graceful operations (dmr_core/draining.py; docs/operations.md, "Signals and faults") -------
    #: Seconds a stopping server (SIGTERM) or a reloading web worker (SIGHUP) lets its requests in
    #: flight finish before they are cut (gunicorn's ``graceful_timeout``).
    graceful_timeout: int = 30

    # -- scale-out: hosts behind one nginx (dmr_core/missing_models.py; docs/scaling.md) -----------
    #: A request for a model this host lacks pulls it from the registry (and ``registry_mirrors``)
    #: and is then served; off by default, as in DMR, where a missing model is a 404.
    pull_on_demand: bool = False
    #: Other dmr hosts (base URLs, comma-separated) asked which of them has a model missing here, so
    #: the 404 names them; the same list may be given to every host (a host asking itself finds nothing).
    peers: str = ""
    #: Seconds each peer has to answer (they are asked at once); a slower one counts as not having it.
    peer_timeout: float = 0.5
    #: API key sent to peers that require one (``Authorization: Bearer``); empty: none is sent.
    peer_api_key: str = field(default="", repr=False)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def store_path(self) -> Path:
        return Path(self.store).expanduser()

    @property
    def pool_path(self) -> Path:
        return Path(self.pool_dir).expanduser() if self.pool_dir else self.store_path / ".pool"


def _coerce(value: str, kind: type) -> Any:
    if kind is bool:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return kind(value)


def _field_types() -> dict[str, type]:
    types = {"str": str, "int": int, "float": float, "bool": bool}
    return {f.name: types[str(f.type)] for f in dataclasses.fields(Settings)}


def _checked(path: Path, name: str, value: Any) -> Any:
    kind = _field_types()[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise ValueError(f"{path}: setting {name!r} must be a {kind.__name__}, not {value!r}")
    return value


def _from_file(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ValueError(f"DMR_CONFIG names {path}, which is not a file")
        return {}
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    unknown = set(data) - set(_field_types())
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
    return {name: _checked(path, name, value) for name, value in data.items()}


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, kind in _field_types().items():
        raw = environ.get(f"DMR_{name.upper()}")
        if raw is not None:
            found[name] = _coerce(raw, kind)
    return found


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, the config file, the environment and ``overrides``."""
    environ = dict(os.environ if environ is None else environ)
    config_file = Path(environ.get("DMR_CONFIG", DEFAULT_CONFIG_FILE))
    values: dict[str, Any] = {}
    if environ.get("MODELS_PATH"):
        values["store"] = environ["MODELS_PATH"]
    if environ.get("MODEL_RUNNER_REGISTRY_MIRRORS"):
        values["registry_mirrors"] = environ["MODEL_RUNNER_REGISTRY_MIRRORS"]
    if environ.get("DMR_ORIGINS"):  # DMR's own name for the CORS allow list
        values["cors_origins"] = environ["DMR_ORIGINS"]
    if environ.get("DISABLE_METRICS"):  # DMR's own switch for /metrics
        values["disable_metrics"] = _coerce(environ["DISABLE_METRICS"], bool)
    values.update(_from_file(config_file, required="DMR_CONFIG" in environ))
    values.update(_from_env(environ))
    values.update(overrides)
    return Settings(**values)
