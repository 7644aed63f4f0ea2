"""The page at ``/`` used as a person would: headless Chromium, clicks and key presses, real servers.

Each test loads the page, does what a user does (pick a model, type, press Enter, click Stop, Pull,
Unload, Delete), and checks what the user would see, plus the server's side of it where that is
the point (a stopped answer frees its runner; an unload empties ``/engines/ps``). What the page
shows over time (the answer's length, the progress bar's value) is recorded in the page by a
MutationObserver, so nothing depends on how often the test looks.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
from playwright.sync_api import expect

from dmr_core.distribution.push import push_model
from dmr_core.store.layout import ModelStore
from tests.web.conftest import start_page_server

pytestmark = pytest.mark.slow  # a browser, servers and real generations: about a minute in all

MODEL = "ai/smollm2:latest"
TIMEOUT_MS = 120_000  # a generation on a busy 2-core machine

# Records the last answer's text length each time the page changes it: window.__lengths.
RECORD_ANSWER_LENGTHS = """() => {
  window.__lengths = [];
  const messages = document.getElementById("messages");
  new MutationObserver(() => {
    const answers = messages.querySelectorAll(".message.assistant .content");
    if (answers.length) window.__lengths.push(answers[answers.length - 1].textContent.length);
  }).observe(messages, {subtree: true, childList: true, characterData: true});
}"""

# Records every value the progress bar takes, with the time it was seen: window.__progress.
RECORD_PROGRESS = """() => {
  window.__progress = [];
  const bar = document.getElementById("pull-progress");
  new MutationObserver((records) => {
    const now = performance.now();
    for (const record of records) {
      if (record.attributeName === "value" && record.oldValue !== null) window.__progress.push([now, Number(record.oldValue), bar.max]);
    }
    if (bar.hasAttribute("value")) window.__progress.push([now, bar.value, bar.max]);
  }).observe(bar, {attributes: true, attributeOldValue: true, attributeFilter: ["value", "max"]});
}"""


def open_page(page, server) -> None:
    page.goto(server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def last_answer(page):
    return page.locator(".message.assistant").last


def ask(page, text: str) -> None:
    """Type a message and press Enter, as a user does."""
    page.locator("#prompt").fill(text)
    page.locator("#prompt").press("Enter")


def wait_until_answered(page) -> None:
    expect(last_answer(page)).to_have_attribute("data-state", "done", timeout=TIMEOUT_MS)
    expect(page.locator("#send")).to_be_enabled()


def runners(server) -> list[dict]:
    return requests.get(server.url + "/engines/ps", timeout=30).json()


def wait_for(predicate, page, timeout_ms: int = 30_000) -> None:
    for _ in range(timeout_ms // 100):
        if predicate():
            return
        page.wait_for_timeout(100)
    raise AssertionError("condition not met in time")


# -- rendering -----------------------------------------------------------------------------------


def test_markdown_is_rendered_safely(web_server, browser_page):
    open_page(browser_page, web_server)
    source = ("# Title\nSome **bold**, *italic* and `x<y>`.\n\n- one\n- two\n\n1. first\n\n"
              "```python\ndef f(x):  # add\n    return x + 1\n```\n"
              "[docs](https://example.com/a?b=1&c=2) [bad](javascript:alert(1)) <img src=x onerror=alert(1)>")  # fmt: skip
    html = browser_page.evaluate("(source) => DmrMarkdown.render(source)", source)
    assert "<h3>Title</h3>" in html
    assert "<strong>bold</strong>" in html and "<em>italic</em>" in html
    assert "<code>x&lt;y&gt;</code>" in html
    assert "<ul><li>one</li><li>two</li></ul>" in html and "<ol><li>first</li></ol>" in html
    assert '<pre data-language="python"><code class="code-block"><span class="tok-keyword">def</span>' in html
    assert '<span class="tok-comment"># add</span>' in html and '<span class="tok-number">1</span>' in html
    assert '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">docs</a>' in html
    # Nothing from the text becomes markup of its own: no script URL, no element, no handler.
    assert "javascript:" not in html.replace("[bad](javascript:alert(1))", "")
    assert 'href="javascript' not in html and "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


# -- chat ----------------------------------------------------------------------------------------


def test_chat_streams_the_answer_and_keeps_the_history(web_server, browser_page, screenshots):
    page = browser_page
    open_page(page, web_server)
    page.locator("#model").select_option(MODEL)
    page.locator("#system-prompt").fill("You are a helpful assistant. Answer with Markdown.")
    page.locator("#temperature").fill("0")
    page.locator("#max-tokens").fill("80")  # a short answer: a small model may go on and on
    page.evaluate(RECORD_ANSWER_LENGTHS)
    ask(page, "Write a Python function that adds two numbers, and explain it in two sentences.")
    expect(page.locator("#stop")).to_be_enabled()  # streaming: the user may stop it
    wait_until_answered(page)

    lengths = page.evaluate("window.__lengths")
    growing = sorted({n for n in lengths if n > 0})
    assert len(growing) >= 2, f"the answer appeared at once, not as a stream: {lengths}"
    # (Not every step is longer: "**bo" shows its stars until "**bold**" closes and hides them.)
    assert last_answer(page).locator(".content").inner_text().strip()
    expect(last_answer(page).locator(".meta")).to_have_text(re.compile(r"^\d+ tokens$"))
    screenshots(page, "chat")

    with page.expect_request("**/engines/v1/chat/completions") as sent:
        ask(page, "Thank you!")
    request = json.loads(sent.value.post_data)
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "user"]
    assert request["temperature"] == 0 and request["max_tokens"] == 80
    assert request["stream"] is True and request["model"] == MODEL
    wait_until_answered(page)
    assert page.locator(".message.user").count() == 2


def test_stop_ends_a_long_answer_and_frees_the_runner(web_server, browser_page):
    page = browser_page
    open_page(page, web_server)
    page.locator("#model").select_option(MODEL)
    ask(page, "Write a very long essay, at least two thousand words, about the history of computing.")
    answer = last_answer(page).locator(".content")
    page.wait_for_function("() => { const a = document.querySelectorAll('.message.assistant .content'); "
                           "return a.length && a[a.length - 1].textContent.length > 40; }", timeout=TIMEOUT_MS)  # fmt: skip
    page.locator("#stop").click()

    expect(last_answer(page)).to_have_attribute("data-state", "stopped")
    expect(last_answer(page).locator(".meta")).to_have_text("stopped")
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()
    stopped_at = len(answer.text_content())
    page.wait_for_timeout(1000)
    assert len(answer.text_content()) == stopped_at, "text kept coming after Stop"
    # The stream's close reached the server: its runner is no longer busy with the answer.
    wait_for(lambda: runners(web_server) and not any(r.get("in_use") for r in runners(web_server)), page)


def test_loaded_runners_are_listed_and_unloaded(web_server, browser_page):
    page = browser_page
    open_page(page, web_server)
    page.locator("#model").select_option(MODEL)
    ask(page, "Say hello.")
    wait_until_answered(page)
    row = page.locator("#runners tbody tr", has_text="smollm2")
    expect(row).to_have_count(1)  # the page refreshes the list after each answer
    expect(row).to_contain_text("llama.cpp")
    row.get_by_role("button", name="Unload").click()
    expect(page.locator("#runners tbody tr", has_text="smollm2")).to_have_count(0)
    expect(page.locator("#runners tbody")).to_contain_text("No model is loaded.")
    assert runners(web_server) == []


# -- models: pull, use, unload, delete -----------------------------------------------------------


@pytest.fixture
def pushed_model(registry, smollm2_gguf, tmp_path) -> str:
    """SmolLM2 in the test registry (pushed from a store of the test's own): its reference."""
    name = f"{registry.host}/ai/smollm2:latest"
    store = ModelStore(tmp_path / "store")
    store.import_gguf(smollm2_gguf, "ai/smollm2")
    store.add_tag("ai/smollm2", name)
    events = list(push_model(store, name))
    assert events[-1].type == "success"
    return name


def test_pull_with_a_moving_progress_bar_then_use_unload_and_delete(empty_server, browser_page, pushed_model,
                                                                    smollm2_gguf, screenshots):  # fmt: skip
    page = browser_page
    open_page(page, empty_server)
    expect(page.locator("#models")).to_contain_text("No model yet")
    page.evaluate(RECORD_PROGRESS)
    page.locator("#pull-name").fill(pushed_model)
    page.locator("#pull").click()
    expect(page.locator("#pull-status")).to_have_text("Model pulled successfully", timeout=TIMEOUT_MS)

    progress = page.evaluate("window.__progress")
    values = [value for _, value, _ in progress]
    total = smollm2_gguf.stat().st_size
    assert values == sorted(values), f"the bar went backwards: {values}"
    assert len(set(values)) >= 3, f"the bar did not move: {values}"
    assert len({time for time, _, _ in progress}) >= 2, "every value came at once"
    assert values[-1] == progress[-1][2] >= total  # full, out of every layer's bytes (the GGUF and the config)
    print(f"\nprogress bar values (of {progress[-1][2]}): {values}")
    expect(page.locator(f'#models li[data-model="{pushed_model}"]')).to_have_count(1)
    expect(page.locator("#model")).to_have_value(pushed_model)  # the pulled model is picked for the chat

    ask(page, "Say hello.")
    wait_until_answered(page)
    row = page.locator("#runners tbody tr", has_text=pushed_model.split("/", 1)[1].split(":")[0])
    expect(row).to_have_count(1)
    screenshots(page, "models")
    row.get_by_role("button", name="Unload").click()
    expect(page.locator("#runners tbody")).to_contain_text("No model is loaded.")

    page.once("dialog", lambda dialog: dialog.accept())  # "Delete the model …?"
    page.locator(f'#models li[data-model="{pushed_model}"]').get_by_role("button", name="Delete").click()
    expect(page.locator("#models")).to_contain_text("No model yet")
    assert requests.get(empty_server.url + "/models", timeout=30).json() == []


def test_a_declined_confirm_deletes_nothing(web_server, browser_page):
    page = browser_page
    open_page(page, web_server)
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator(f'#models li[data-model="{MODEL}"]').get_by_role("button", name="Delete").click()
    expect(page.locator(f'#models li[data-model="{MODEL}"]')).to_have_count(1)
    assert requests.get(web_server.url + f"/models/{MODEL}", timeout=30).status_code == 200


def test_a_failed_pull_says_why(web_server, browser_page, registry):
    page = browser_page
    open_page(page, web_server)
    page.locator("#pull-name").fill(f"{registry.host}/ai/nothing:latest")
    page.locator("#pull").click()
    expect(page.locator("#notice")).to_contain_text("404")
    expect(page.locator("#pull")).to_be_enabled()


# -- API keys ------------------------------------------------------------------------------------


@pytest.fixture
def keyed_server(model_store):
    server = start_page_server(model_store, DMR_API_KEYS="page-test-key")
    try:
        yield server
    finally:
        from dmr_core.testing import stop_server

        stop_server(server)


def test_the_page_asks_for_a_key_once_and_sends_it(keyed_server, browser_page):
    page = browser_page
    page.goto(keyed_server.url + "/")  # "/" is open (auth_open_paths); /models is not
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    page.locator("#api-key").fill("wrong-key")
    page.locator("#key-ok").click()
    expect(page.locator("#key-refused")).to_be_visible()  # asked again, saying why
    page.locator("#api-key").fill("page-test-key")
    with page.expect_request("**/engines/ps") as later:
        page.locator("#key-ok").click()
    assert later.value.headers["authorization"] == "Bearer page-test-key"
    expect(page.locator(f'#models li[data-model="{MODEL}"]')).to_have_count(1)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    assert page.evaluate("sessionStorage.getItem('dmr-api-key')") == "page-test-key"
    page.reload()  # same tab: the key is kept, no dialog
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(dialog).to_be_hidden()
    page.locator("#forget-key").click()
    assert page.evaluate("sessionStorage.getItem('dmr-api-key')") is None
