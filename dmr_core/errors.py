"""The one exception tree of dmr.

Every failure a client can see is a :class:`DmrError` subclass carrying an HTTP ``status``, a
machine-readable ``code`` and, where one input is to blame, the request ``param``. Engines and the
pool raise these types (never bare strings to be pattern-matched later); each API dialect maps
them to its own wire shape in exactly one place (``dialects/<name>/errors.py``). They cross the
inference-pool socket as :meth:`DmrError.to_dict` frames and are rebuilt by :func:`error_from_dict`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DmrError(Exception):
    """Base class: a failure with an HTTP status, a code and a human message."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    #: OpenAI-style error "type" this family maps to.
    kind: ClassVar[str] = "server_error"
    #: Headers the HTTP answer carries (``Retry-After``, ``WWW-Authenticate``), whatever the dialect.
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the pool socket (see :func:`error_from_dict`)."""
        return {"class": type(self).__name__, "message": self.message, "param": self.param}


class InvalidRequest(DmrError):
    """The request is malformed or asks for something this server does not do (400)."""

    status = 400
    code = "invalid_request"
    kind = "invalid_request_error"


class RequestTooLarge(InvalidRequest):
    """The body is over ``max_body`` (413, as nginx and Anthropic answer; DMR itself says 400)."""

    status = 413
    code = "request_too_large"


class InvalidReference(InvalidRequest):
    """A model name that cannot be parsed or that tries to escape the store."""

    code = "invalid_reference"


class UnsupportedParameter(InvalidRequest):
    """A documented parameter whose value this server cannot honour (for example ``n`` > 1)."""

    code = "unsupported_parameter"


class ContextLengthExceeded(InvalidRequest):
    """The prompt (plus the requested tokens) does not fit in the model's context window."""

    code = "context_length_exceeded"


class RankingUnsupported(InvalidRequest):
    """The model cannot rerank: it has no classification head (a chat or embedding model)."""

    code = "model_cannot_rank"


class NotFound(DmrError):
    """Something named by the request does not exist (404)."""

    status = 404
    code = "not_found"
    kind = "invalid_request_error"


class ModelNotFound(NotFound):
    """The model is not in the local store (dmr never pulls implicitly)."""

    code = "model_not_found"


class ModelOnPeer(ModelNotFound):
    """The model is not on this host, but a peer (the ``peers`` setting) has it (404). The code
    stays ``model_not_found`` for clients that test it; the message and the ``X-DMR-Model-Hosts``
    header name the peers that have it, so a client or an operator knows where to go."""

    def __init__(self, message: str, *, param: str | None = None, hosts: tuple[str, ...] = ()) -> None:
        super().__init__(message, param=param)
        self.hosts = tuple(hosts)
        self.headers = {"X-DMR-Model-Hosts": ", ".join(self.hosts)}


class EngineNotFound(NotFound):
    """No engine of that name is registered."""

    code = "engine_not_found"


class Conflict(DmrError):
    """The request conflicts with the current state (409)."""

    status = 409
    code = "conflict"
    kind = "invalid_request_error"


class Unauthorized(DmrError):
    """A registry refused our credentials, or asked for some and we had none (401)."""

    status = 401
    code = "unauthorized"
    kind = "authentication_error"


class CredentialHelperFailed(Unauthorized):
    """The Docker credential helper the Docker config names is missing or failed: nothing to send (401)."""

    code = "credential_helper_failed"


class UnsupportedMediaType(DmrError):
    """An artifact whose config media type is not a model config DMR knows (422)."""

    status = 422
    code = "unsupported_media_type"
    kind = "invalid_request_error"


class RegistryError(DmrError):
    """A registry failed or answered something that cannot be used (502)."""

    status = 502
    code = "registry_error"
    kind = "server_error"


class RegistryUnreachable(RegistryError):
    """The registry could not be reached, or the connection broke mid-transfer."""

    code = "registry_unreachable"


class DigestMismatch(RegistryError):
    """Downloaded bytes do not hash to the digest the manifest promised; nothing was kept."""

    code = "digest_mismatch"


class BlobsMissing(DmrError):
    """A manifest names blobs the store does not hold, so it cannot be listed yet."""

    code = "blobs_missing"

    def __init__(self, message: str, *, param: str | None = None, digests: tuple[str, ...] = ()) -> None:
        super().__init__(message, param=param)
        self.digests = digests


class EngineUnavailable(DmrError):
    """The engine exists but cannot serve now: not installed, or the pool is down (503)."""

    status = 503
    code = "engine_unavailable"
    kind = "server_error"


class ModelLoadFailed(DmrError):
    """The engine could not load the model's files."""

    code = "model_load_failed"


class WorkerCrashed(DmrError):
    """The inference worker running this job died; only its in-flight jobs fail."""

    code = "worker_crashed"


class ClientDisconnected(DmrError):
    """The HTTP client closed its connection while its job ran; the job was cancelled. Nobody
    reads the answer: 499 is what access logs show (nginx's "client closed request")."""

    status = 499
    code = "client_disconnected"


class EngineError(DmrError):
    """The engine failed while running a job."""

    code = "engine_error"


class InsufficientMemory(DmrError):
    """The model cannot fit the device's memory budget even with every idle model unloaded (507)."""

    status = 507
    code = "insufficient_memory"
    kind = "server_error"


class QueueFull(EngineUnavailable):
    """Too many requests already wait for this model (503); the client may retry soon."""

    code = "queue_full"
    headers = {"Retry-After": "1"}


def _subclasses(cls: type[DmrError]) -> dict[str, type[DmrError]]:
    found = {cls.__name__: cls}
    for sub in cls.__subclasses__():
        found.update(_subclasses(sub))
    return found


def error_from_dict(data: dict[str, Any]) -> DmrError:
    """Rebuild an error sent by :meth:`DmrError.to_dict`; unknown classes become :class:`DmrError`."""
    cls = _subclasses(DmrError).get(str(data.get("class")), DmrError)
    return cls(str(data.get("message", "")), param=data.get("param"))


class MethodNotAllowed(DmrError):
    """The path exists but not for this HTTP method (405)."""

    status = 405
    code = "method_not_allowed"
    kind = "invalid_request_error"


# -- admission: API keys, CORS and limits (dmr_core/admission.py) -----------------------------------


class InvalidApiKey(DmrError):
    """API keys are configured and the request carried none, or a wrong one (401). OpenAI's own
    answer: type ``invalid_request_error``, code ``invalid_api_key``."""

    status = 401
    code = "invalid_api_key"
    kind = "invalid_request_error"
    headers = {"WWW-Authenticate": "Bearer"}


class OriginNotAllowed(DmrError):
    """A browser request from an Origin that is not in the CORS allow list (403, as DMR)."""

    status = 403
    code = "origin_not_allowed"
    kind = "permission_error"


class PromptTooLong(InvalidRequest):
    """The prompt has more tokens than ``max_prompt_tokens`` allows per request (400)."""

    code = "prompt_too_long"


class TooManyConcurrentRequests(DmrError):
    """This API key already has ``max_concurrent_per_key`` requests running (429)."""

    status = 429
    code = "rate_limit_exceeded"
    kind = "rate_limit_error"
    headers = {"Retry-After": "1"}


# -- graceful operations (dmr_core/draining.py) -------------------------------------------------------


class ShuttingDown(EngineUnavailable):
    """The server is stopping (SIGTERM) or this web worker is being replaced (SIGHUP): requests in
    flight finish, a new one is refused (503) and may be retried at once, elsewhere or on a new worker."""

    code = "shutting_down"
    headers = {"Retry-After": "1"}  # gunicorn closes the connection itself once its worker stops
