"""Pulling GGUF models from the Hugging Face Hub: ``hf.co/org/repo[:QUANT]``.

huggingface-hub lists and downloads the files into its own cache, so ``HF_HUB_OFFLINE=1`` and later
pulls reuse what is there; the store then imports them as ``huggingface.co/org/repo:TAG``. As in DMR,
a tag already in the store is answered "Using cached model" without asking the Hub.

What huggingface-hub reads from the environment once, at import (``HF_ENDPOINT``, ``HF_HUB_OFFLINE``,
the cache location), is read here at every pull, so a long-running server follows its environment.
The requests it makes (huggingface-hub 2.x): ``GET /api/models/{repo}/revision/main?blobs=True``
lists every file with its size and LFS sha256; then, per file not yet cached, ``HEAD
/{repo}/resolve/main/{file}`` (commit, etag, size, CDN location) and a ``GET`` of that location.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dmr_core import metrics
from dmr_core.distribution.hf_selection import HubFile, Selection, select_gguf
from dmr_core.distribution.progress import LayerProgress, ProgressEvent, Throttle, human_bytes
from dmr_core.errors import DmrError, InvalidReference, ModelNotFound, RegistryError, RegistryUnreachable, Unauthorized
from dmr_core.store.layout import Model, ModelStore
from dmr_core.store.references import Reference, parse_reference

HUGGINGFACE_REGISTRY = "huggingface.co"
#: DMR always pulls the main branch: the tag picks a quantization, not a git revision.
REVISION = "main"
_HEX64 = re.compile(r"[a-f0-9]{64}")
_TRUE = frozenset({"1", "on", "yes", "true"})


def is_huggingface(reference: Reference | str) -> bool:
    """Whether a reference (or a model name) is pulled from the Hugging Face Hub."""
    if isinstance(reference, str):
        reference = parse_reference(reference)
    return reference.registry == HUGGINGFACE_REGISTRY


def pull_huggingface(store: ModelStore, name: str, *, token: str | None = None) -> Iterator[ProgressEvent]:
    """Pull ``hf.co/org/repo[:QUANT]`` into ``store``, yielding DMR progress events; the last is ``success``.

    :param token: a Hugging Face token (the CLI sends ``HF_TOKEN`` as the bearer token); defaults to
        ``HF_TOKEN``, then huggingface-hub's stored login.
    """
    reference = _huggingface_reference(name)
    cached = _tagged_model(store, reference)
    if cached is not None:
        yield ProgressEvent("success", f"Using cached model: {cached.config.get('size', '')}")
        return
    hub = _Hub.from_environment(token)
    repository = _repository_as_typed(name)
    with _hub_errors(hub, repository):
        selection = select_gguf(hub.list_files(repository), reference.tag, hub.describe(repository))
        download = _Download(hub, repository, selection)
        yield from download.progress()
    _import(store, selection, download.paths, reference.name)
    yield ProgressEvent("success", "Model pulled successfully")


# Where to ask, and how --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hub:
    endpoint: str
    cache_dir: str
    token: str | None
    offline: bool

    @classmethod
    def from_environment(cls, token: str | None) -> _Hub:
        from huggingface_hub import constants

        env = os.environ
        home = env.get("HF_HOME")
        cache = env.get("HF_HUB_CACHE") or (os.path.join(home, "hub") if home else constants.HF_HUB_CACHE)
        offline = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").lower() in _TRUE
        endpoint = env.get("HF_ENDPOINT") or constants.ENDPOINT
        return cls(endpoint.rstrip("/"), os.path.expanduser(cache), token or env.get("HF_TOKEN") or None, offline)

    def describe(self, repository: str) -> str:
        """How error messages name the repository: offline, only its cached files are looked at."""
        return f"{repository} (cached files only: HF_HUB_OFFLINE is set)" if self.offline else repository

    def list_files(self, repository: str) -> list[HubFile]:
        return self._cached_files(repository) if self.offline else self._remote_files(repository)

    def _remote_files(self, repository: str) -> list[HubFile]:
        # model_info rather than list_repo_tree: one request with sizes and sha256s, and no retry loop
        # (list_repo_tree backs off for ~20 s before admitting the Hub is unreachable).
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, token=self.token)
        info = api.model_info(repository, revision=REVISION, files_metadata=True)
        return [_hub_file(sibling) for sibling in info.siblings or ()]

    def _cached_files(self, repository: str) -> list[HubFile]:
        """The files of the last cached snapshot of ``main``: all that offline mode may use."""
        from huggingface_hub.file_download import repo_folder_name

        folder = Path(self.cache_dir) / repo_folder_name(repo_id=repository, repo_type="model")
        try:
            commit = (folder / "refs" / REVISION).read_text().strip()
        except OSError:
            raise ModelNotFound(f"{repository} is not in the Hugging Face cache ({self.cache_dir}) and "
                                "HF_HUB_OFFLINE is set: pull it once online first") from None  # fmt: skip
        snapshot = folder / "snapshots" / commit
        return [_cached_file(snapshot, path) for path in sorted(snapshot.rglob("*")) if path.is_file()]

    def download(self, repository: str, file: HubFile, bar_class: type) -> Path:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(
            repository, file.path, revision=REVISION, cache_dir=self.cache_dir, endpoint=self.endpoint,
            token=self.token, local_files_only=self.offline, tqdm_class=bar_class,  # type: ignore[arg-type]
        )  # fmt: skip
        return Path(path)


def _hub_file(sibling) -> HubFile:
    if sibling.lfs is not None:
        return HubFile(sibling.rfilename, sibling.lfs.size, sibling.lfs.sha256)
    return HubFile(sibling.rfilename, sibling.size or 0)


def _cached_file(snapshot: Path, path: Path) -> HubFile:
    # Snapshot entries link to blobs/<etag>, and an LFS file's etag is its sha256.
    blob_name = path.resolve().name
    sha256 = blob_name if _HEX64.fullmatch(blob_name) else None
    return HubFile(path.relative_to(snapshot).as_posix(), path.stat().st_size, sha256)


# Downloading, observed ---------------------------------------------------------------------------


class _Cancelled(Exception):
    """Raised inside huggingface-hub's download loop once nobody listens to the progress any more."""


class _ByteCounter:
    """Stands in for huggingface-hub's tqdm bar and reports each block written to the file.

    ``update`` counts bytes written, for plain HTTP and Xet downloads alike; ``update_transfer``
    (Xet's wire bytes, also called by plain HTTP) is ignored so nothing is counted twice. It must be
    a class, not a partial: huggingface-hub looks for ``update_transfer`` on the class to know that
    one bar takes both counts.
    """

    on_bytes: Callable[[int], None]
    cancelled: threading.Event

    def __init__(self, **_bar_options: object) -> None:
        pass

    @classmethod
    def reporting_to(cls, on_bytes: Callable[[int], None], cancelled: threading.Event) -> type[_ByteCounter]:
        return type(cls.__name__, (cls,), {"on_bytes": staticmethod(on_bytes), "cancelled": cancelled})

    def update(self, count: int = 1) -> None:
        if self.cancelled.is_set():
            raise _Cancelled()
        self.on_bytes(count)

    def update_transfer(self, count: int = 1) -> None:
        pass

    def set_postfix_str(self, *args: object, **kwargs: object) -> None:
        pass

    set_transfer_postfix_str = set_postfix_str

    def close(self) -> None:
        pass

    def __enter__(self) -> _ByteCounter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


_FINISHED = object()


class _Download:
    """Runs ``hf_hub_download`` for each selected file in a thread; ``progress()`` reports its bytes.

    huggingface-hub downloads synchronously, so the thread feeds a queue that the generator drains:
    the caller sees events while bytes move. If the caller stops listening, the next block written
    raises :class:`_Cancelled` in the download loop, and huggingface-hub deletes its partial file.
    """

    def __init__(self, hub: _Hub, repository: str, selection: Selection) -> None:
        self.hub = hub
        self.repository = repository
        self.files = selection.files
        self.total = selection.size
        self.paths: list[Path] = []
        self._events: queue.Queue = queue.Queue()
        self._cancelled = threading.Event()

    def progress(self) -> Iterator[ProgressEvent]:
        threading.Thread(target=self._run, name=f"hf-pull {self.repository}", daemon=True).start()
        done = [0] * len(self.files)
        throttle = Throttle()
        try:
            while (item := self._events.get()) is not _FINISHED:
                if isinstance(item, BaseException):
                    raise item
                index, count = item
                done[index] += count
                metrics.pulled(count)
                layer = LayerProgress(_layer_id(self.files[index]), self.files[index].size, done[index])
                if throttle.due(layer):
                    yield ProgressEvent("progress", f"Downloaded: {human_bytes(sum(done))}", self.total, layer)
        finally:
            self._cancelled.set()

    def _run(self) -> None:
        try:
            for index, file in enumerate(self.files):
                if self._cancelled.is_set():
                    return
                counter = _ByteCounter.reporting_to(partial(self._report, index), self._cancelled)
                self.paths.append(self.hub.download(self.repository, file, counter))
            self._events.put(_FINISHED)
        except BaseException as exc:  # handed to the generator, which raises it in the caller
            self._events.put(exc)

    def _report(self, index: int, count: int) -> None:
        self._events.put((index, count))


def _layer_id(file: HubFile) -> str:
    return file.digest or file.path


# The store -----------------------------------------------------------------------------------------


def _tagged_model(store: ModelStore, reference: Reference) -> Model | None:
    try:
        return store.resolve(reference.name)
    except ModelNotFound:
        return None


def _import(store: ModelStore, selection: Selection, paths: list[Path], tag: str) -> Model:
    mmproj = paths[-1] if selection.mmproj else None
    return store.import_gguf(paths[: len(selection.weights)], tag, mmproj=mmproj)


# Names and errors ------------------------------------------------------------------------------------


def _huggingface_reference(name: str) -> Reference:
    reference = parse_reference(name)
    if not is_huggingface(reference):
        raise InvalidReference(f"{name} is not a Hugging Face model (hf.co/org/repo[:QUANT])", param="model")
    if reference.digest or reference.repository.count("/") != 1:
        raise InvalidReference(f"invalid Hugging Face model {name!r}: expected hf.co/org/repo[:QUANT]", param="model")
    return reference


def _repository_as_typed(name: str) -> str:
    """``org/Repo`` as the user wrote it: Hub URLs are case-sensitive, stored names are lower-cased."""
    path = name.strip().split("/", 1)[1]
    colon = path.rfind(":")
    return path[:colon] if colon > path.rfind("/") else path


@contextmanager
def _hub_errors(hub: _Hub, repository: str) -> Iterator[None]:
    """Turn huggingface-hub's and httpx2's exceptions into DmrErrors that say what to do."""
    import httpx2
    from huggingface_hub import errors as hf

    try:
        yield
    except hf.GatedRepoError:
        raise Unauthorized(_access_message(hub, repository, "is gated")) from None
    except hf.RepositoryNotFoundError:
        hint = "" if hub.token else " (if it is private, set HF_TOKEN)"
        raise ModelNotFound(f"model {repository} not found on Hugging Face{hint}", param="model") from None
    except (hf.RevisionNotFoundError, hf.RemoteEntryNotFoundError) as exc:
        raise ModelNotFound(f"{repository}: {_summary(exc)}", param="model") from None
    except hf.LocalEntryNotFoundError as exc:
        raise _not_available(hub, repository, exc) from None
    except hf.HfHubHTTPError as exc:
        raise _http_error(hub, repository, exc) from None
    except (httpx2.HTTPError, hf.OfflineModeIsEnabled) as exc:
        raise RegistryUnreachable(f"cannot reach Hugging Face at {hub.endpoint}: {exc}") from None


def _not_available(hub: _Hub, repository: str, exc: Exception) -> DmrError:
    if hub.offline:
        return ModelNotFound(f"{repository}: a selected file is not in the Hugging Face cache "
                             f"({hub.cache_dir}) and HF_HUB_OFFLINE is set", param="model")  # fmt: skip
    return RegistryUnreachable(f"cannot download from {hub.endpoint}: {_summary(exc)}")


def _http_error(hub: _Hub, repository: str, exc) -> DmrError:
    status = exc.response.status_code if exc.response is not None else 0
    if status in (401, 403):
        return Unauthorized(_access_message(hub, repository, f"refused access ({status})"))
    return RegistryError(f"Hugging Face at {hub.endpoint} failed: {_summary(exc)}")


def _access_message(hub: _Hub, repository: str, problem: str) -> str:
    advice = "check that your token has access to it" if hub.token else "set HF_TOKEN to a token with access"
    return f"Hugging Face repository {repository} {problem}: {advice}"


def _summary(exc: Exception) -> str:
    """huggingface-hub's messages run to several paragraphs; the first two say what happened."""
    paragraphs = [p for p in str(exc).split("\n\n") if p.strip()]
    return " ".join(" ".join(paragraphs[:2]).split()) or type(exc).__name__
