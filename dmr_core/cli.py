"""The ``dmr`` command line. Thin: parse the arguments, call the core, print the result."""

from __future__ import annotations

import os
from pathlib import Path

import click

from dmr_core.errors import DmrError
from dmr_core.settings import load_settings
from dmr_core.store import ModelStore, parse_reference


@click.group()
def main() -> None:
    """dmr: a model runner compatible with Docker Model Runner."""


@main.command()
@click.option("--gguf", "gguf_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="GGUF file to package.")
@click.option("--store", "store_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model store root (default: the `store` setting).")
@click.argument("name")
def package(gguf_file: Path, store_path: Path | None, name: str) -> None:
    """Package a local GGUF file into the model store as NAME (e.g. ai/smollm2:360M-Q4_K_M)."""
    store = ModelStore(store_path or load_settings().store_path)
    try:
        model = store.import_gguf(gguf_file, name)
        tag = parse_reference(name).familiar
    except DmrError as exc:
        raise click.ClickException(exc.message) from exc
    except OSError as exc:  # an unwritable or full store: say so in one line, not a traceback
        raise click.ClickException(f"cannot write to the store {store.root}: {exc.strerror or exc}") from exc
    click.echo(f"{model.id} {tag}")


@main.command()
@click.option("--bind", default=None, help="Address to listen on (default 127.0.0.1:12434).")
@click.option("--store", "store_path", default=None, help="Model store root.")
@click.option("--workers", type=int, default=None, help="Number of gevent web workers.")
@click.option("--devices", default=None, help="cpu, cuda:0,cuda:1 or auto.")
def serve(bind: str | None, store_path: str | None, workers: int | None, devices: str | None) -> None:
    """Serve the API with gunicorn (gevent workers) and the inference pool, as conf/gunicorn.conf.py does."""
    from dmr_core.serving import serve as run_server

    # Through the environment, so the web workers and the pool processes see the same values.
    chosen = {"DMR_BIND": bind, "DMR_STORE": store_path, "DMR_WEB_WORKERS": workers, "DMR_DEVICES": devices}
    os.environ.update({key: str(value) for key, value in chosen.items() if value is not None})
    run_server(load_settings())


if __name__ == "__main__":
    main()
