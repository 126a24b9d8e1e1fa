// The in-browser chat page: pick a GGUF file or give a URL (?model=URL loads one at once), watch it
// download and go to the GPU, then chat; the reply streams in token by token, generated in this page.
// URLs are kept in the Origin Private File System, so the next visit loads without downloading.
// document.body.dataset.state says what the page is doing (loading, ready, generating, error), for tests
// and for styling.
import {cachedModels, createEngine, removeCachedModel} from '../pkg/index.js';

const $ = (id) => document.getElementById(id);
const messages = [];
let engine = null;

function setState(state) {
  document.body.dataset.state = state;
  const ready = state === 'ready';
  $('prompt').disabled = $('send').disabled = !ready;
  $('stop').disabled = state !== 'generating';
  $('load').disabled = state === 'loading' || state === 'generating' || !engine;
}

// A model too large for the adapter: the message names what it needs and what the adapter offers.
function showError(e) {
  const text = e ? (e.message || String(e)) : '';
  $('error').textContent = e && e.code === 'too-large' ? `This model does not fit on this GPU. ${text}` : text;
}

function mib(n) {
  return (n / 1048576).toFixed(1) + ' MiB';
}

async function listCached() {
  const list = $('cached');
  list.textContent = '';
  for (const m of await cachedModels()) {
    const li = document.createElement('li');
    li.textContent = `${m.name} (${mib(m.size)}, cached) `;
    const load = document.createElement('button');
    load.className = 'plain';
    load.textContent = 'load';
    load.onclick = () => loadModel(m.url);
    const remove = document.createElement('button');
    remove.className = 'plain';
    remove.textContent = 'remove';
    remove.onclick = async () => {
      await removeCachedModel(m.url);
      listCached();
    };
    li.append(load, remove);
    list.append(li);
  }
}

async function loadModel(source) {
  showError(null);
  setState('loading');
  const bar = $('progress');
  bar.hidden = false;
  bar.value = 0;
  const started = performance.now();
  try {
    const info = await engine.load(source, {
      cache: $('cache').checked,
      contextSize: Number($('ctx').value) || 2048,
      onProgress: (p) => {
        bar.value = p.total ? p.loaded / p.total : 0;
        const what = p.phase === 'download' ? 'downloading' : 'loading to the GPU';
        $('status').textContent = `${what}: ${mib(p.loaded)}${p.total ? ' of ' + mib(p.total) : ''}`;
      },
    });
    const a = engine.adapter;
    $('status').textContent = `${info.name}: ${info.layers} layers, dim ${info.dim}, vocabulary ${info.vocab}, ` +
        `context ${info.context}, ${mib(info.gpuBytes)} on ${a.vendor} ${a.architecture} ${a.device}`.trim() +
        ` — loaded in ${((performance.now() - started) / 1000).toFixed(1)} s${info.cached ? ' from this browser\'s cache' : ''}` +
        (info.tokenizer ? '' : ' (no vocabulary: this file can only be driven with token ids)');
    messages.length = 0;
    $('log').textContent = '';
    setState(info.tokenizer ? 'ready' : 'loaded');
    listCached();
  } catch (e) {
    showError(e);
    $('status').textContent = '';
    setState('error');
  } finally {
    bar.hidden = true;
  }
}

function bubble(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  div.textContent = text;
  $('log').append(div);
  div.scrollIntoView({block: 'end'});
  return div;
}

async function send() {
  const text = $('prompt').value;
  if (!text.trim()) return;
  $('prompt').value = '';
  showError(null);
  const conversation = [];
  if ($('system').value.trim()) conversation.push({role: 'system', content: $('system').value});
  messages.push({role: 'user', content: text});
  conversation.push(...messages);
  bubble('user', text);
  const reply = bubble('assistant', '');
  setState('generating');
  let content = '';
  try {
    const options = {temperature: Number($('temp').value), maxTokens: Number($('max').value) || 256};
    for await (const t of engine.chat(conversation, options)) {
      content += t.text;
      reply.textContent = content;
      const s = engine.stats;
      $('speed').textContent = s && s.tokensPerSecond ? `${s.tokensPerSecond.toFixed(1)} tok/s` : '';
      reply.scrollIntoView({block: 'end'});
    }
    const s = engine.stats;
    $('speed').textContent = `${s.tokens} tokens, ${s.tokensPerSecond.toFixed(1)} tok/s` +
        ` (prompt ${s.promptTokens} tokens in ${s.promptSeconds.toFixed(2)} s)`;
    messages.push({role: 'assistant', content});
  } catch (e) {
    showError(e);
    messages.pop();
  }
  setState('ready');
}

$('load').onclick = () => {
  const file = $('file').files[0];
  const url = $('url').value.trim();
  if (file) loadModel(file);
  else if (url) loadModel(url);
  else showError(new Error('Pick a .gguf file or give its URL.'));
};
$('send').onclick = send;
$('prompt').onkeydown = (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    send();
  }
};
$('stop').onclick = () => engine.abort();
$('clear').onclick = () => {
  messages.length = 0;
  $('log').textContent = '';
};

try {
  engine = await createEngine();
  setState('idle');
  await listCached();
  const model = new URLSearchParams(location.search).get('model');
  if (model) {
    $('url').value = model;
    await loadModel(model);
  }
} catch (e) {
  showError(e);
  setState('error');
}
