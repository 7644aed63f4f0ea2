"""The CLI verbs that talk to a running server (``DMR_HOST``): run, ps, df, unload, configure, status,
logs, version. Tables by default, ``--json`` for scripts; a failure is one ``Error:`` line, exit 1."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, TypeVar

import click

from dmr_core import __version__
from dmr_core.api_client import ApiClient, ClientError
from dmr_core.chat_session import AnswerPrinter, ChatSession, StreamError, Terminal, answer, chat, stream_deltas

T = TypeVar("T")
CHAT_PATH = "/engines/v1/chat/completions"
json_option = click.option("--json", "as_json", is_flag=True, help="Print the server's JSON (for scripts).")


def remote(action: Callable[[], T]) -> T:
    """Call the server; a failure is one line on stderr and exit status 1, never a traceback."""
    try:
        return action()
    except (ClientError, StreamError) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from exc


def client() -> ApiClient:
    return ApiClient.from_environment()


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Columns aligned on the widest cell, as ``docker model ps`` prints them."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def human_size(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1000
    return f"{size:.2f} GB"


def ago(rfc3339: str, now: datetime | None = None) -> str:
    if rfc3339.startswith("0001-"):  # Go's zero time: in use
        return "in use"
    seconds = int(((now or datetime.now(timezone.utc)) - datetime.fromisoformat(rfc3339)).total_seconds())
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= length:
            return f"{seconds // length} {unit}{'s' if seconds // length > 1 else ''} ago"
    return "just now"


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


# -- run -----------------------------------------------------------------------------------------


@click.command()
@click.option("--max-tokens", type=int, default=None, help="Most tokens per answer (/set parameter max_tokens too).")
@click.argument("model")
@click.argument("prompt", nargs=-1)
def run(max_tokens: int | None, model: str, prompt: tuple[str, ...]) -> None:
    """Chat with MODEL on the running server, pulling it first if it is missing.

    With PROMPT (or text piped on stdin), print one streamed answer and exit; piped text comes
    before PROMPT (`cat notes.txt | dmr run ai/smollm2 "summarise"`). Without, chat: /? for help.
    """
    api = client()
    remote(lambda: ensure_model(api, model))
    session = ChatSession(model, parameters={"max_tokens": max_tokens} if max_tokens else {})
    piped = "" if sys.stdin.isatty() else sys.stdin.read()
    text = "\n\n".join(part for part in (piped.strip(), " ".join(prompt)) if part)
    if prompt or not sys.stdin.isatty():
        if not text:
            raise click.UsageError("nothing to send: give a PROMPT or pipe text in")
        remote(lambda: one_answer(api, session, text))
        return
    chat(session, terminal(), lambda body: send(api, body), errors=(ClientError,))


def ensure_model(api: ApiClient, model: str) -> None:
    """Pull ``model`` through the server when its store lacks it, with ``dmr pull``'s bars."""
    from dmr_core.progress_bars import LayerBars

    if api.has_model(model):
        return
    click.echo(f"Unable to find model '{model}' locally. Pulling from the server.", err=True)
    click.echo(LayerBars().follow(api.pull_events(model)), err=True)


def send(api: ApiClient, body: dict) -> Iterator:
    return stream_deltas(api.stream_lines(CHAT_PATH, body))


def one_answer(api: ApiClient, session: ChatSession, text: str) -> None:
    """The answer on stdout; reasoning, dimmed, on stderr, so that stdout holds the answer alone."""
    printer = AnswerPrinter(lambda t: click.echo(t, nl=False), lambda t: click.echo(t, nl=False, err=True),
                            dim=lambda t: click.style(t, dim=True))  # fmt: skip
    if answer(send(api, session.request_body(text)), printer).interrupted:
        sys.exit(130)


def terminal() -> Terminal:
    try:
        import readline  # noqa: F401 (line editing and history for input())
    except ImportError:
        pass
    return Terminal(read_line=input, write=lambda t: click.echo(t, nl=False), dim=lambda t: click.style(t, dim=True))


# -- ps, df, unload, configure, status, logs, version ---------------------------------------------


@click.command()
@json_option
def ps(as_json: bool) -> None:
    """List the models loaded on the server (GET /engines/ps)."""
    runners = remote(lambda: client().get_json("/engines/ps"))
    if as_json:
        return echo_json(runners)
    rows = [[r["model_name"], r["backend_name"], r["mode"], r.get("context_size") or "", r.get("keep_alive", ""),
             "loading" if r.get("loading") else ago(r["last_used"])] for r in runners]  # fmt: skip
    click.echo(table(["MODEL NAME", "BACKEND", "MODE", "CONTEXT", "KEEP ALIVE", "LAST USED"], rows))


@click.command()
@json_option
def df(as_json: bool) -> None:
    """Disk used by the server's models and its default engine (GET /engines/df)."""
    usage = remote(lambda: client().get_json("/engines/df"))
    if as_json:
        return echo_json(usage)
    rows = [["Models", human_size(usage["models_disk_usage"])],
            ["Inference engine", human_size(usage["default_backend_disk_usage"])]]  # fmt: skip
    click.echo(table(["TYPE", "SIZE"], rows))


@click.command()
@click.option("--all", "unload_all", is_flag=True, help="Unload every idle model.")
@click.option("--backend", default="", help="Only this engine's runners.")
@json_option
@click.argument("models", nargs=-1)
def unload(unload_all: bool, backend: str, as_json: bool, models: tuple[str, ...]) -> None:
    """Unload MODELS (or --all) from memory; models in use stay (POST /engines/unload)."""
    if not models and not unload_all:
        raise click.UsageError("name the models to unload, or give --all")
    body = {"all": unload_all, "backend": backend, "models": list(models)}
    result = remote(lambda: client().post_json("/engines/unload", body).json())
    if as_json:
        return echo_json(result)
    click.echo(f"Unloaded {result['unloaded_runners']} model(s).")


@click.command()
@click.option("--context-size", type=int, default=None, help="Context window in tokens (-1: the model's own).")
@click.option("--keep-alive", default=None, help="How long it stays loaded when idle: 5m, 1h, -1 (ever), 0.")
@click.option("--mode", default=None, help="completion (default), embedding, reranking or image-generation.")
@click.argument("model")
@click.argument("flags", nargs=-1, type=click.UNPROCESSED)
def configure(context_size: int | None, keep_alive: str | None, mode: str | None, model: str,
              flags: tuple[str, ...]) -> None:  # fmt: skip
    """Set how the server loads MODEL; engine flags after `--`
    (`dmr configure ai/smollm2 --context-size 8192 -- --threads 4`). POST /engines/_configure."""
    body: dict[str, Any] = {"model": model}
    optional = {"context-size": context_size, "keep_alive": keep_alive, "mode": mode,
                "runtime-flags": list(flags) or None}  # fmt: skip
    body.update({key: value for key, value in optional.items() if value is not None})
    remote(lambda: client().post_json("/engines/_configure", body))
    click.echo(f"Configured {model}: it loads with these settings from its next request.")


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Whether the server runs, and its engines (GET /engines/status)."""
    api = client()
    engines = remote(lambda: api.get_json("/engines/status"))
    if as_json:
        return echo_json(engines)
    click.echo(f"dmr is running at {api.url}\n")
    click.echo(table(["ENGINE", "STATUS"], [[name, line] for name, line in engines.items()]))


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing what the server logs.")
def logs(follow: bool) -> None:
    """Print the server's log (GET /logs; the server needs DMR_LOG_FILE)."""
    response = remote(lambda: client().request("GET", "/logs", params={"follow": str(follow).lower()}, stream=True))
    out = click.get_binary_stream("stdout")
    try:
        with response:
            for chunk in response.iter_content(chunk_size=None):
                out.write(chunk)
                out.flush()
    except KeyboardInterrupt:
        pass


@click.command()
@json_option
def version(as_json: bool) -> None:
    """The client's version and the server's (GET /version)."""
    api = client()
    try:
        server: dict[str, Any] | None = api.get_json("/version")
    except ClientError as exc:
        server, problem = None, exc.message
    if as_json:
        echo_json({"client": {"version": __version__}, "server": server and {**server, "url": api.url}})
    else:
        click.echo(f"Client: dmr {__version__}")
        click.echo(f"Server: dmr {server['version']} at {api.url}" if server else f"Server: {problem}")
    if server is None:
        sys.exit(1)


COMMANDS = (run, ps, df, unload, configure, status, logs, version)
