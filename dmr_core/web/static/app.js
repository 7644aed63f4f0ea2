// dmr's page: chat with a local model, pull, unload and delete models, all over dmr's own HTTP API
// (the same calls as any client: /models, /models/create, /engines/ps, /engines/unload and the
// OpenAI-compatible /engines/v1/chat/completions). No framework and no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "dmr-api-key";

// -- HTTP ----------------------------------------------------------------------------------------
// Every call goes through api(): it sends the API key as a Bearer token once there is one, and on
// a 401 asks for a key (one dialog, however many calls were refused) and tries again.

class ApiError extends Error {}

let keyPrompt = null;

function askForKey(refused) {
  keyPrompt = keyPrompt || new Promise((resolve) => {
    const dialog = $("key-dialog");
    $("key-refused").hidden = !refused;
    $("api-key").value = "";
    dialog.addEventListener("close", () => {
      const key = dialog.returnValue === "ok" ? $("api-key").value.trim() : "";
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      showKeyState();
      keyPrompt = null;
      resolve(Boolean(key));
    }, { once: true });
    dialog.showModal();
  });
  return keyPrompt;
}

function showKeyState() {
  $("forget-key").hidden = !sessionStorage.getItem(KEY_STORAGE);
}

async function errorMessage(response) {
  const text = (await response.text()).trim();
  let message = text;
  try {
    const body = JSON.parse(text);
    message = (body.error && (body.error.message || body.error)) || body.message || text;
  } catch (_) { /* dmr's native endpoints answer plain text */ }
  if (response.status === 403 && /origin/i.test(message)) {
    message += ` — start dmr with DMR_CORS_ORIGINS=${location.origin} to use this page from ${location.origin}`;
  }
  return `${response.status}: ${message}`;
}

async function api(path, options = {}) {
  for (let refused = false; ; refused = true) {
    const headers = new Headers(options.headers || {});
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401 && await askForKey(refused || Boolean(key))) continue;
    if (!response.ok) throw new ApiError(await errorMessage(response));
    return response;
  }
}

const postJson = (path, body, options = {}) => api(path, {
  ...options, method: "POST", body: JSON.stringify(body),
  headers: { "Content-Type": "application/json", ...(options.headers || {}) },
});

// Lines of a streamed body, as they arrive (the last one may end without a newline).
async function* lines(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const complete = buffer.split("\n");
    buffer = complete.pop();
    yield* complete;
  }
  if (buffer) yield buffer;
}

// The JSON payloads of a server-sent event stream (OpenAI's: one "data:" line per event).
async function* sseData(response) {
  for await (const line of lines(response)) {
    if (!line.startsWith("data:")) continue;
    const data = line.slice(5).trim();
    if (data === "[DONE]") return;
    yield JSON.parse(data);
  }
}

function notice(message) {
  $("notice").textContent = message || "";
  $("notice").hidden = !message;
}

// Runs an action from a button or form; an error becomes the notice instead of vanishing.
function guarded(action) {
  return async (...args) => {
    try {
      await action(...args);
    } catch (error) {
      notice(error instanceof ApiError ? error.message : `${error.name}: ${error.message}`);
    }
  };
}

function element(tag, attributes = {}, text = "") {
  const made = document.createElement(tag);
  Object.entries(attributes).forEach(([name, value]) => made.setAttribute(name, value));
  made.textContent = text;
  return made;
}

// -- models --------------------------------------------------------------------------------------

// Names as people write them: Docker Hub's docker.io/ is implied, as in `docker model ls`.
const shortName = (tag) => tag.replace(/^docker\.io\//, "");
const modelNames = (models) => models.flatMap((model) => (model.tags.length ? model.tags.map(shortName) : [model.id]));

async function loadModels(select) {
  const names = modelNames(await (await api("/models")).json());
  const picker = $("model");
  const chosen = select || picker.value || localStorage.getItem("dmr-model");
  picker.replaceChildren(...names.map((name) => element("option", { value: name }, name)));
  if (names.includes(chosen)) picker.value = chosen;
  $("models").replaceChildren(...names.map(modelRow));
  if (!names.length) $("models").append(element("li", { class: "empty" }, "No model yet: pull one below."));
}

function modelRow(name) {
  const row = element("li", { "data-model": name });
  const remove = element("button", { type: "button", class: "small danger", title: `Delete ${name}` }, "Delete");
  remove.addEventListener("click", guarded(() => deleteModel(name)));
  row.append(element("span", { class: "name" }, name), remove);
  return row;
}

const pathOf = (name) => name.split("/").map(encodeURIComponent).join("/");

async function deleteModel(name) {
  if (!confirm(`Delete the model ${name}? Its files are removed unless another name refers to them.`)) return;
  await api(`/models/${pathOf(name)}`, { method: "DELETE" });
  notice("");
  await loadModels();
}

// -- pull ----------------------------------------------------------------------------------------

const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

function showPull(layers, total) {
  const done = [...layers.values()].reduce((sum, current) => sum + current, 0);
  const bar = $("pull-progress");
  bar.max = Math.max(total, 1);
  bar.value = Math.min(done, bar.max);
  $("pull-status").textContent = `${megabytes(done)} of ${megabytes(total)} (${Math.floor((100 * done) / Math.max(total, 1))}%)`;
}

async function pull(event) {
  event.preventDefault();
  const name = $("pull-name").value.trim();
  const bar = $("pull-progress");
  $("pull").disabled = true;
  bar.hidden = false;
  bar.removeAttribute("value"); // indeterminate until the first bytes
  $("pull-status").textContent = `Pulling ${name}…`;
  try {
    await followPull(name);
    await loadModels(name);
  } catch (error) {
    $("pull-status").textContent = error.message;
    throw error;
  } finally {
    $("pull").disabled = false;
  }
}

async function followPull(name) {
  const response = await postJson("/models/create", { from: name }, { headers: { Accept: "application/json" } });
  const layers = new Map(); // layer id → bytes so far
  for await (const line of lines(response)) {
    if (!line.trim()) continue;
    const progress = JSON.parse(line);
    if (progress.type === "error") throw new ApiError(progress.message);
    if (progress.type === "warning") notice(progress.message);
    if (progress.type === "progress") {
      layers.set(progress.layer.id, progress.layer.current);
      showPull(layers, progress.total);
    }
    if (progress.type === "success") {
      const bar = $("pull-progress");
      bar.value = bar.max;
      $("pull-status").textContent = progress.message;
    }
  }
}

// -- loaded runners ------------------------------------------------------------------------------

function runnerState(runner) {
  if (runner.loading) return "loading";
  if (runner.in_use) return "in use";
  return `idle since ${new Date(runner.last_used).toLocaleTimeString()}`;
}

function runnerRow(runner) {
  const row = element("tr", { "data-model": runner.model_name });
  const unload = element("button", { type: "button", class: "small" }, "Unload");
  unload.addEventListener("click", guarded(() => unloadRunner(runner.model_name)));
  const cells = [runner.model_name, runner.backend_name, runnerState(runner)];
  row.append(...cells.map((text) => element("td", {}, text)), element("td", {}));
  row.lastChild.append(unload);
  return row;
}

async function loadRunners() {
  const runners = await (await api("/engines/ps")).json();
  const rows = runners.map(runnerRow);
  if (!rows.length) rows.push(element("tr", { class: "empty" }, "No model is loaded."));
  $("runners").tBodies[0].replaceChildren(...rows);
}

async function unloadRunner(name) {
  const { unloaded_runners: count } = await (await postJson("/engines/unload", { models: [name] })).json();
  notice(count ? "" : `${name} is busy: it is unloaded once idle, try again then`);
  await loadRunners();
}

// -- chat ----------------------------------------------------------------------------------------

const history = []; // {role, content} of this chat, the system prompt apart
let generation = null; // the AbortController of the answer being streamed

function addMessage(role, text) {
  const message = element("div", { class: `message ${role}` });
  const reasoning = element("details", { class: "reasoning", hidden: "" });
  reasoning.append(element("summary", {}, "Thinking"), element("div", { class: "reasoning-text" }));
  message.append(element("div", { class: "role" }, role), reasoning, element("div", { class: "content" }));
  message.querySelector(".content").innerHTML = DmrMarkdown.render(text);
  $("messages").append(message);
  message.scrollIntoView({ block: "end" });
  return message;
}

function chatRequest(model) {
  const system = $("system-prompt").value.trim();
  const request = {
    model, stream: true, stream_options: { include_usage: true },
    messages: [...(system ? [{ role: "system", content: system }] : []), ...history],
  };
  const temperature = $("temperature").value;
  if (temperature !== "") request.temperature = Number(temperature);
  const maxTokens = $("max-tokens").value;
  if (maxTokens !== "") request.max_tokens = Number(maxTokens);
  return request;
}

// Re-renders a message as its text grows, at most once a frame.
function renderer(message) {
  let pending = false;
  const answer = { content: "", reasoning: "" };
  const draw = () => {
    pending = false;
    message.querySelector(".content").innerHTML = DmrMarkdown.render(answer.content);
    const reasoning = message.querySelector(".reasoning");
    reasoning.hidden = !answer.reasoning;
    reasoning.querySelector(".reasoning-text").textContent = answer.reasoning;
    message.scrollIntoView({ block: "end" });
  };
  answer.update = () => {
    if (!pending) { pending = true; requestAnimationFrame(draw); }
  };
  answer.finish = draw;
  return answer;
}

async function streamAnswer(model, answer, signal) {
  const response = await postJson("/engines/v1/chat/completions", chatRequest(model), { signal });
  for await (const chunk of sseData(response)) {
    if (chunk.error) throw new ApiError(chunk.error.message || String(chunk.error));
    const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
    answer.content += delta.content || "";
    answer.reasoning += delta.reasoning_content || "";
    if (chunk.usage) answer.usage = chunk.usage;
    answer.update();
  }
}

function setGenerating(controller) {
  generation = controller;
  $("send").disabled = Boolean(controller);
  $("stop").disabled = !controller;
  $("messages").dataset.state = controller ? "streaming" : "idle";
}

async function send(event) {
  event.preventDefault();
  const text = $("prompt").value.trim();
  const model = $("model").value;
  if (!text || generation) return;
  if (!model) return notice("Pick a model first (or pull one).");
  localStorage.setItem("dmr-model", model);
  $("prompt").value = "";
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const message = addMessage("assistant", "");
  const answer = renderer(message);
  const controller = new AbortController();
  setGenerating(controller);
  try {
    await streamAnswer(model, answer, controller.signal);
    message.dataset.state = "done";
  } catch (error) {
    message.dataset.state = error.name === "AbortError" ? "stopped" : "failed";
    if (error.name !== "AbortError") throw error;
  } finally {
    answer.finish();
    finishMessage(message, answer);
    if (answer.content) history.push({ role: "assistant", content: answer.content });
    setGenerating(null);
    loadRunners().catch(() => {});
  }
}

function finishMessage(message, answer) {
  const usage = answer.usage ? `${answer.usage.completion_tokens} tokens` : "";
  const note = { stopped: "stopped", failed: "failed" }[message.dataset.state] || usage;
  if (note) message.append(element("div", { class: "meta" }, note));
}

function stop() {
  if (generation) generation.abort(); // closing the stream is what stops the server generating
}

function clearChat() {
  stop();
  history.length = 0;
  $("messages").replaceChildren();
}

// -- start ---------------------------------------------------------------------------------------

function wire() {
  $("chat-form").addEventListener("submit", guarded(send));
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("stop").addEventListener("click", stop);
  $("clear-chat").addEventListener("click", clearChat);
  $("pull-form").addEventListener("submit", guarded(pull));
  $("refresh-models").addEventListener("click", guarded(() => loadModels()));
  $("refresh-runners").addEventListener("click", guarded(loadRunners));
  $("forget-key").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORAGE); showKeyState(); });
}

async function start() {
  wire();
  showKeyState();
  await loadModels(); // first, alone: a 401 here asks for the key before anything else is sent
  await loadRunners();
  setInterval(() => { if (!document.hidden && !generation) loadRunners().catch(() => {}); }, 5000);
  document.body.dataset.ready = "true";
}

guarded(start)();
