// wgllm in the browser: Llama-family models from GGUF files on the visitor's GPU (WebGPU), the same C++
// engine and WGSL kernels as the native wgllm, compiled to WebAssembly. See docs/web.md.

/** Why an operation failed. */
export type WgllmErrorCode =
  | 'no-webgpu'  // the browser has no WebGPU, or no adapter
  | 'too-large'  // the model needs more GPU memory or a larger buffer than the adapter offers
  | 'bad-file'   // not a GGUF file the engine reads (the message is the native build's)
  | 'bad-input'  // e.g. an empty prompt
  | 'network'    // the download failed
  | 'gpu'        // a WebGPU error or a lost device
  | 'aborted'    // abort() or the AbortSignal stopped a load
  | 'busy'       // another load or generation is running on this engine
  | 'no-model';  // nothing is loaded

export class WgllmError extends Error {
  readonly code: WgllmErrorCode;
}

export interface EngineOptions {
  /** Where wgllm.wasm is, when it is not beside wgllm.js. */
  wasmUrl?: string | URL;
}

/** Checks for WebGPU and an adapter (throws WgllmError 'no-webgpu'); loads nothing yet. */
export function createEngine(options?: EngineOptions): Promise<Engine>;

export interface LoadProgress {
  /** 'download': a URL being copied into the cache; 'load': the weights going to the GPU. */
  phase: 'download' | 'load';
  loaded: number;
  /** Bytes in all; 0 when a server does not say. */
  total: number;
}

export interface LoadOptions {
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Context size in tokens (default 2048, at most the model's). */
  contextSize?: number;
  /**
   * For URLs: keep the file in the Origin Private File System and load it from there on the next visit
   * (default true). With false the response streams straight to the GPU.
   */
  cache?: boolean;
  /** The file name shown in messages (default: the File's or URL's). */
  name?: string;
}

export interface ModelInfo {
  name: string;
  architecture: string;
  vocab: number;
  dim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  /** The context this engine allocated, and the model's own. */
  context: number;
  modelContext: number;
  weightBytes: number;
  /** All GPU buffers: weights, KV cache, activations. */
  gpuBytes: number;
  /**
   * What the engine planned before allocating (the native build's runtime::plan_memory), checked against
   * the adapter's maxBufferSize and, where the browser tells it, its memory.
   */
  memoryPlan: MemoryPlan;
  fileBytes: number;
  /** False for files without a vocabulary: generate from and get token ids only. */
  tokenizer: boolean;
  chatTemplate: string | null;
  bos?: number;
  eos?: number;
  addBos?: boolean;
  /** Loaded from the Origin Private File System without a download. */
  cached: boolean;
  loadSeconds: number;
}

export interface MemoryPlan {
  weights: number;
  kvCache: number;
  activations: number;
  total: number;
  /** The largest buffer that is not a weight (weights are split to fit the adapter's limits). */
  largestBuffer: number;
  context: number;
}

export interface AdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  /**
   * The adapter's memory (its largest device-local heap) where the browser tells it: Chromium with its
   * WebGPU developer features on; null elsewhere, and then only the buffer limits are checked before loading.
   */
  memoryBytes: number | null;
  features: string[];
}

/** llama.cpp's defaults; temperature 0 is greedy. */
export interface SamplingOptions {
  temperature?: number;   // 0.8
  topK?: number;          // 40 (0: off)
  topP?: number;          // 0.95 (1: off)
  minP?: number;          // 0.05 (0: off)
  repeatPenalty?: number; // 1.0 (off)
  repeatLastN?: number;   // 64
  /** Default: random. */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** New tokens at most (default: until an end-of-generation token or the context is full). */
  maxTokens?: number;
  signal?: AbortSignal;
  /** complete() and chatComplete(): each piece of text as it comes (id -1: held-back bytes at the end). */
  onToken?: (text: string, id: number) => void;
}

export interface Token {
  /** The token id; -1 for the held-back bytes flushed at the end. */
  id: number;
  /** Text safe to show now (UTF-8 sequences split across tokens are completed first). */
  text: string;
}

export interface GenerationStats {
  promptTokens: number;
  tokens: number;
  /** Until the first new token. */
  promptSeconds: number;
  seconds: number;
  tokensPerSecond: number;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

export class Engine {
  readonly model: ModelInfo | null;
  readonly adapter: AdapterInfo | null;
  readonly stats: GenerationStats | null;
  /** The engine's WebAssembly memory (it only grows): the header and vocabulary, never the weights. */
  readonly wasmMemoryBytes: number;

  /** A GGUF file from a URL, a File/Blob or bytes. Replaces the model loaded before. */
  load(source: string | URL | Blob | ArrayBuffer | ArrayBufferView, options?: LoadOptions): Promise<ModelInfo>;
  /** Frees the model's GPU memory. */
  unload(): Promise<void>;
  /** Stops a generation after the token in flight, or a load before its next piece. */
  abort(): void;

  tokenize(text: string, options?: {addBos?: boolean; special?: boolean}): number[];
  /** The prompt the model's chat template (ChatML if it has none) makes of a conversation. */
  applyChatTemplate(messages: ChatMessage[], options?: {addGenerationPrompt?: boolean}): {text: string; ids: number[]};

  /** Streams tokens after a prompt (BOS added as the vocabulary says) or after token ids. */
  generate(input: string | number[], options?: GenerateOptions): AsyncGenerator<Token, void, void>;
  /** Streams the assistant's reply; a conversation that extends the last one reuses its KV cache. */
  chat(messages: ChatMessage[], options?: GenerateOptions): AsyncGenerator<Token, void, void>;
  complete(input: string | number[], options?: GenerateOptions): Promise<{text: string; ids: number[]; stats: GenerationStats}>;
  chatComplete(messages: ChatMessage[], options?: GenerateOptions): Promise<{text: string; ids: number[]; stats: GenerationStats}>;

  /** Every position's logits (vocabulary-sized rows) for token ids, from a fresh context. */
  logits(ids: number[]): Promise<Float32Array[]>;
}

/** Models kept in the Origin Private File System by load(url). */
export function cachedModels(): Promise<Array<{url: string; name: string; size: number}>>;
export function removeCachedModel(url: string): Promise<void>;
