// The keys a query at position `pos` attends to, shared by attention.wgsl and attention_prefill.wgsl:
// positions first_key(pos)..pos of its slot. first_key is 0, or with WINDOW (sliding-window attention,
// Mistral) pos - WINDOW + 1 once pos reaches WINDOW, or with CHUNK (Llama 4's chunked attention) the start
// of pos's chunk.
fn first_key(pos: u32) -> u32 {
#if CHUNK
  return pos - pos % CHUNK;
#else
#if WINDOW
  return select(0u, pos + 1u - WINDOW, pos >= WINDOW);
#else
  return 0u;
#endif
#endif
}
