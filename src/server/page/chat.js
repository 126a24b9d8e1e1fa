// The chat page of `wgllm serve`: streams replies from /v1/chat/completions. Model text reaches the DOM
// only through renderMarkdown(), which escapes it before it adds its own few tags.
"use strict";

const $ = (id) => document.getElementById(id);
const SETTINGS = ["system", "temperature", "top_p", "top_k", "min_p", "max_tokens", "seed", "api_key"];

const state = {
  history: [],      // {role, content} of the conversation, without the system prompt
  controller: null, // AbortController of the reply being streamed
  epoch: 0,         // counts "New chat"s: a reply that outlives its conversation leaves the history alone
};

// ---- Markdown: escape first, then a small subset (code blocks, inline code, bold, italic, headings,
// lists, links to http(s) only, paragraphs). Every tag in the output is one this function wrote.
function escapeHtml(s) {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
          .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

function inline(s) {  // s is already escaped
  const codes = [];
  s = s.replace(/`([^`\n]+)`/g, (_, c) => { codes.push(c); return `\u0000${codes.length - 1}\u0000`; });
  s = s.replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
       .replace(/(^|[^*])\*([^*\n]+)\*(?!\*)/g, "$1<em>$2</em>")
       .replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g,
                '<a href="$2" target="_blank" rel="noopener noreferrer nofollow">$1</a>');
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${codes[Number(i)]}</code>`);
}

function renderMarkdown(text) {
  text = text.replace(/\u0000/g, "\uFFFD");  // NUL marks inline code spans below
  const out = [];
  const parts = text.split(/```/);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {  // inside a fence: the first line names the language
      const body = part.replace(/^[^\n]*\n?/, "");
      out.push(`<pre><code>${escapeHtml(body)}</code></pre>`);
      return;
    }
    const lines = escapeHtml(part).split("\n");
    let para = [], list = null;
    const flushPara = () => { if (para.length) out.push(`<p>${inline(para.join("<br>"))}</p>`); para = []; };
    const flushList = () => { if (list) out.push(`<${list.tag}>${list.items.map((x) => `<li>${inline(x)}</li>`).join("")}</${list.tag}>`); list = null; };
    for (const line of lines) {
      let m;
      if ((m = line.match(/^(#{1,3})\s+(.*)$/))) {
        flushPara(); flushList();
        const level = m[1].length + 1;
        out.push(`<h${level}>${inline(m[2])}</h${level}>`);
      } else if ((m = line.match(/^\s*(?:[-*+]|(\d+)[.)])\s+(.*)$/))) {
        flushPara();
        const tag = m[1] ? "ol" : "ul";
        if (!list || list.tag !== tag) { flushList(); list = { tag, items: [] }; }
        list.items.push(m[2]);
      } else if (line.trim() === "") {
        flushPara(); flushList();
      } else {
        flushList();
        para.push(line);
      }
    }
    flushPara(); flushList();
  });
  return out.join("");
}

// ---- Settings, kept in localStorage.
function loadSettings() {
  for (const id of SETTINGS) {
    const v = localStorage.getItem("wgllm." + id);
    if (v !== null) $(id).value = v;
  }
}
function saveSettings() {
  for (const id of SETTINGS) localStorage.setItem("wgllm." + id, $(id).value);
}
function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}
function requestBody() {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...state.history);
  const body = { messages, stream: true, stream_options: { include_usage: true } };
  for (const [id, parse] of [["temperature", parseFloat], ["top_p", parseFloat], ["top_k", parseInt],
                             ["min_p", parseFloat], ["max_tokens", parseInt], ["seed", parseInt]]) {
    const v = $(id).value.trim();
    if (v !== "" && !Number.isNaN(parse(v))) body[id] = parse(v);
  }
  if ($("model").dataset.id) body.model = $("model").dataset.id;
  return body;
}

// ---- The conversation log.
function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  if (role === "user") div.textContent = text;
  $("log").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}
function showError(message) {
  const div = document.createElement("div");
  div.className = "msg error";
  div.setAttribute("role", "alert");
  div.textContent = message;
  $("log").appendChild(div);
  div.scrollIntoView({ block: "end" });
}
function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("prompt").disabled = false;
}
function setNote(div, text) {
  let note = div.querySelector(".note");
  if (!note) { note = document.createElement("span"); note.className = "note"; div.appendChild(note); }
  note.textContent = text;
}

async function errorText(response) {
  try {
    const j = await response.json();
    if (j && j.error && j.error.message) return `${response.status}: ${j.error.message}`;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

// Reads the server-sent events of a streamed reply; calls onEvent with each parsed JSON chunk.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  const epoch = state.epoch;
  state.history.push({ role: "user", content: text });
  addMessage("user", text);
  const div = addMessage("assistant", "");
  div.classList.add("streaming");
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  let reply = "", tokens = 0, firstAt = 0, usage = null, finish = null, frame = 0;
  const started = performance.now();
  const render = () => {
    frame = 0;
    div.innerHTML = renderMarkdown(reply);
    const rate = tokens > 1 ? (tokens - 1) / ((performance.now() - firstAt) / 1000) : 0;
    $("stats").textContent = `${tokens} tokens · ${rate.toFixed(1)} tok/s`;
    div.scrollIntoView({ block: "end" });
  };
  try {
    const response = await fetch("v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(requestBody()), signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message || "the server failed");
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) return;
      if (choice.finish_reason) finish = choice.finish_reason;
      const delta = choice.delta && choice.delta.content;
      if (delta) {
        if (!firstAt) firstAt = performance.now();
        reply += delta;
        tokens += 1;
        if (!frame) frame = requestAnimationFrame(render);
      }
    });
    cancelAnimationFrame(frame);
    render();
    const n = usage ? usage.completion_tokens : tokens;
    const seconds = firstAt ? (performance.now() - firstAt) / 1000 : 0;
    const ttft = firstAt ? ((firstAt - started) / 1000).toFixed(2) : "-";
    $("stats").textContent = `${n} tokens · ${seconds > 0 && n > 1 ? ((n - 1) / seconds).toFixed(1) : "-"} tok/s` +
      ` · first token ${ttft} s` + (usage ? ` · prompt ${usage.prompt_tokens} (${usage.prompt_tokens_details.cached_tokens} cached)` : "");
    if (finish === "length") setNote(div, "stopped: token limit");
  } catch (e) {
    cancelAnimationFrame(frame);
    render();
    if (e.name === "AbortError") {
      setNote(div, "stopped");
    } else {
      showError(e.message || String(e));
    }
  } finally {
    div.classList.remove("streaming");
    if (state.controller === controller) {
      state.controller = null;
      setBusy(false);
    }
    // What was shown stays in the history, also when stopped, so the next turn continues from it.
    if (epoch !== state.epoch) return;
    if (reply) state.history.push({ role: "assistant", content: reply });
    else state.history.pop();
    $("prompt").focus();
  }
}

async function loadModel() {
  try {
    const response = await fetch("v1/models", { headers: headers() });
    if (!response.ok) throw new Error(await errorText(response));
    const j = await response.json();
    const model = j.data[0];
    $("model").textContent = model.id;
    $("model").dataset.id = model.id;
    document.title = model.id + " · wgllm chat";
  } catch (e) {
    showError("Could not reach the server: " + (e.message || e));
  }
}

function init() {
  loadSettings();
  $("toggle-settings").addEventListener("click", () => {
    const open = $("settings").hidden;
    $("settings").hidden = !open;
    $("toggle-settings").setAttribute("aria-expanded", String(open));
  });
  for (const id of SETTINGS) $(id).addEventListener("change", saveSettings);
  $("api_key").addEventListener("change", loadModel);
  $("new-chat").addEventListener("click", () => {
    if (state.controller) state.controller.abort();
    state.epoch += 1;
    state.history = [];
    $("log").replaceChildren();
    $("stats").textContent = "";
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || state.controller) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); });
  loadModel();
}

init();
