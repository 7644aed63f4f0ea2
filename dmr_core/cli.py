"""The ``dmr`` command line. Thin: parse the arguments, call the core, print the result."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from dmr_core.cli_remote import COMMANDS
from dmr_core.errors import DmrError
from dmr_core.settings import load_settings
from dmr_core.store import ModelStore, parse_reference
from dmr_core.store.references import familiar_name


@click.group()
def main() -> None:
    """dmr: a model runner compatible with Docker Model Runner.

    The store verbs (pull, push, ls, rm, tag, inspect, package) work on the local store; run, ps,
    df, unload, configure, status, logs and version talk to the server at DMR_HOST (default
    127.0.0.1:12434, with DMR_API_KEY as its key). Shell completion:
    eval "$(_DMR_COMPLETE=bash_source dmr)" (zsh_source, fish_source for the others).
    """


def _store(store_path: Path | None = None) -> ModelStore:
    return ModelStore(store_path or load_settings().store_path)


def _run(action):
    """Call the core; a dmr error is one line on stderr and exit status 1, never a traceback."""
    try:
        return action()
    except DmrError as exc:
        raise click.ClickException(exc.message) from exc


store_option = click.option("--store", "store_path", type=click.Path(file_okay=False, path_type=Path),
                            default=None, help="Model store root (default: the `store` setting).")  # fmt: skip
token_option = click.option("--token", envvar="DMR_REGISTRY_TOKEN", default=None,
                            help="Bearer token for the registry or Hugging Face (HF_TOKEN also works for hf.co).")  # fmt: skip


@main.command()
@store_option
@token_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.argument("name")
def pull(store_path: Path | None, token: str | None, quiet: bool, name: str) -> None:
    """Pull NAME from its registry (Docker Hub by default) or Hugging Face (hf.co/org/repo:QUANT)."""
    from dmr_core.distribution.sources import pull_events
    from dmr_core.progress_bars import LayerBars

    store = _store(store_path)
    token = token or (os.environ.get("HF_TOKEN") if name.startswith(("hf.co/", "huggingface.co/")) else None)
    click.echo(_run(lambda: LayerBars(not quiet).follow(pull_events(store, name, bearer_token=token))))


@main.command()
@store_option
@token_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.argument("name")
@click.argument("target", required=False)
def push(store_path: Path | None, token: str | None, quiet: bool, name: str, target: str | None) -> None:
    """Push the local model NAME to its registry (or to TARGET)."""
    from dmr_core.distribution.sources import push_events
    from dmr_core.progress_bars import LayerBars

    store = _store(store_path)
    click.echo(_run(lambda: LayerBars(not quiet).follow(push_events(store, name, target, bearer_token=token))))


@main.command("ls")
@store_option
@click.option("--json", "as_json", is_flag=True, help="DMR's model objects as JSON.")
def list_models(store_path: Path | None, as_json: bool) -> None:
    """List the models in the store."""
    from dmr_core.dialects.native.models import model_object

    models = _store(store_path).list_models()
    if as_json:
        click.echo(json.dumps([model_object(m) for m in models], indent=2))
        return
    click.echo(f"{'MODEL NAME':<40} {'PARAMETERS':<11} {'QUANTIZATION':<13} {'ARCHITECTURE':<13} {'MODEL ID':<13} SIZE")
    for model in models:
        config = model.config
        for name in [familiar_name(t) for t in model.tags] or ["<untagged>"]:
            click.echo(f"{name:<40} {config.get('parameters', ''):<11} {config.get('quantization', ''):<13} "
                       f"{config.get('architecture', ''):<13} {model.short_id:<13} {config.get('size', '')}")  # fmt: skip


@main.command()
@store_option
@click.option("--force", "-f", is_flag=True, help="Delete a model id even if it has several tags.")
@click.argument("names", nargs=-1, required=True)
def rm(store_path: Path | None, force: bool, names: tuple[str, ...]) -> None:
    """Remove models (untag, and delete what nothing else uses)."""
    store = _store(store_path)
    for name in names:
        for line in _run(lambda: store.delete(name, force=force)):
            for verb, what in line.items():
                click.echo(f"{verb}: {familiar_name(what) if verb == 'Untagged' else what}")


@main.command()
@store_option
@click.argument("source")
@click.argument("target")
def tag(store_path: Path | None, source: str, target: str) -> None:
    """Give the model SOURCE the additional name TARGET."""
    model = _run(lambda: _store(store_path).add_tag(source, target))
    click.echo(f"Model {model.short_id} tagged successfully with {parse_reference(target).familiar}")


@main.command()
@store_option
@click.argument("name")
def inspect(store_path: Path | None, name: str) -> None:
    """Show a model's id, tags and configuration as JSON."""
    from dmr_core.dialects.native.models import find, model_object

    model = _run(lambda: find(_store(store_path), name))
    click.echo(json.dumps(model_object(model), indent=2))


@main.command()
@click.option("--gguf", "gguf_file", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="GGUF file to package.")
@click.option("--diffusers", "diffusers_dir", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Diffusers folder (model_index.json at its root) to package, one layer per file.")
@click.option("--dduf", "dduf_file", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="DDUF file (a whole diffusers pipeline) to package.")
@click.option("--chat-template", "chat_template", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Jinja chat template that replaces the GGUF's own (with --gguf).")
@click.option("--store", "store_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model store root (default: the `store` setting).")
@click.argument("name")
def package(gguf_file: Path | None, diffusers_dir: Path | None, dduf_file: Path | None, chat_template: Path | None,
            store_path: Path | None, name: str) -> None:  # fmt: skip
    """Package local model files into the model store as NAME (e.g. ai/smollm2:360M-Q4_K_M):
    exactly one of --gguf FILE, --diffusers DIR or --dduf FILE."""
    source = _package_source({"--gguf": gguf_file, "--diffusers": diffusers_dir, "--dduf": dduf_file}, chat_template)
    store = _store(store_path)
    imports = {"--gguf": lambda: store.import_gguf(gguf_file, name, chat_template=chat_template),
               "--diffusers": lambda: store.import_diffusers(diffusers_dir, name),
               "--dduf": lambda: store.import_dduf(dduf_file, name)}  # fmt: skip
    try:
        model = _run(imports[source])
    except OSError as exc:  # an unwritable or full store: say so in one line, not a traceback
        raise click.ClickException(f"cannot write to the store {store.root}: {exc.strerror or exc}") from exc
    click.echo(f"{model.id} {parse_reference(name).familiar}")


def _package_source(sources: dict[str, Path | None], chat_template: Path | None) -> str:
    """The one source flag given (a usage error, exit status 2, for none or several)."""
    given = [flag for flag, value in sources.items() if value is not None]
    if len(given) != 1:
        found = " and ".join(given) if given else "none"
        raise click.UsageError(f"give exactly one of --gguf, --diffusers or --dduf (got {found})")
    if chat_template is not None and given[0] != "--gguf":
        raise click.UsageError("--chat-template goes with --gguf only")
    return given[0]


@main.command()
@click.option("--bind", default=None, help="Address to listen on (default 127.0.0.1:12434).")
@click.option("--store", "store_path", default=None, help="Model store root.")
@click.option("--workers", type=int, default=None, help="Number of gevent web workers.")
@click.option("--devices", default=None, help="cpu, cuda:0,cuda:1 or auto.")
@click.option("--log-file", default=None, help="Also keep the log in this file, for `dmr logs` (DMR_LOG_FILE).")
def serve(bind: str | None, store_path: str | None, workers: int | None, devices: str | None,
          log_file: str | None) -> None:  # fmt: skip
    """Serve the API with gunicorn (gevent workers) and the inference pool, as conf/gunicorn.conf.py does."""
    from dmr_core.serving import serve as run_server

    # Through the environment, so the web workers and the pool processes see the same values.
    chosen = {"DMR_BIND": bind, "DMR_STORE": store_path, "DMR_WEB_WORKERS": workers, "DMR_DEVICES": devices,
              "DMR_LOG_FILE": log_file}  # fmt: skip
    os.environ.update({key: str(value) for key, value in chosen.items() if value is not None})
    run_server(load_settings())


# The verbs that talk to a running server (DMR_HOST): run, ps, df, unload, configure, status, logs, version.
for _command in COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()
