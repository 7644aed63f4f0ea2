"""`dmr run` of a model the server lacks (pulled first, with progress), and of a thinking model."""

from dmr_core.distribution.push import push_model
from dmr_core.store.layout import ModelStore
from tests.cli.conftest import dmr


def test_run_pulls_a_missing_model_then_answers(writable_server, registry):
    store = ModelStore(writable_server.store)
    name = f"{registry.host}/team/chat:v1"
    store.add_tag("ai/smollm2", name)
    list(push_model(store, name))
    store.delete(store.resolve(name).id, force=True)  # the store is empty now: every byte must be pulled
    done = dmr(writable_server, "run", name, "Hi", "--max-tokens", "4", key=None)
    assert done.returncode == 0, done.stderr
    assert f"Unable to find model '{name}' locally. Pulling from the server." in done.stderr
    assert "Model pulled successfully" in done.stderr and done.stdout.strip()
    assert "100%" in done.stderr  # dmr pull's bars (tqdm) drawn from the server's progress stream
    assert store.resolve(name).id  # in the store now


def test_run_of_a_model_no_registry_has_is_one_error_line(cli_server, registry):
    done = dmr(cli_server, "run", f"{registry.host}/team/absent:v1", "Hi")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("Error: 404 NOT FOUND: ")
    assert "Traceback" not in done.stderr


def test_reasoning_goes_to_stderr_apart_from_the_answer(thinking_server):
    from tests.support.thinking import THINKING_MODEL

    done = dmr(thinking_server, "run", THINKING_MODEL, "Hi", "--max-tokens", "16", key=None)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("Thinking...\n") and len(done.stderr) > len("Thinking...\n\n")
    assert "Thinking" not in done.stdout and "<think>" not in done.stdout + done.stderr
