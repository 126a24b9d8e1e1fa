// How attention.wgsl splits a token's query heads over workgroups, and when attention_prefill.wgsl runs.
#pragma once

#include <cstdint>

namespace wgllm::kernels {

// Query heads one attention workgroup serves (attention.wgsl's HEADS): heads that share a kv head (GQA)
// read each key and value row once for all of them instead of once each. The largest divisor of the group
// (n_heads / n_kv) up to 4, or up to 2 for heads over 128 elements (workgroups of 256): each head adds a
// score, a running max and sum and an output accumulator per invocation and 3.5 KiB (7 KiB for the wide
// heads) of workgroup memory, which stays within WebGPU's guaranteed 16 KiB. A token's attention runs
// n_heads / HEADS workgroups (per span).
uint32_t attention_heads_per_workgroup(uint32_t n_heads, uint32_t n_kv, uint32_t head_dim);

// attention_prefill.wgsl (passes of one slot's tokens). HALVES: the invocations per query row and key in
// q·k and per row and output in p·V, 2 (each a half of the head) for heads of 128 elements, else 1. The
// workgroup memory it takes with `rows` query rows ((token, head) pairs) per workgroup, and the rows it runs
// with on an adapter with `workgroup_bytes` of it: the largest of 64, 32 and 16 that fits (more rows, fewer
// reads of each key), or 0 where none does or the heads are not a multiple of 32 up to 128 elements; then
// attention.wgsl serves those passes too.
uint32_t attention_prefill_halves(uint32_t head_dim);
uint32_t attention_prefill_bytes(uint32_t head_dim, uint32_t rows);
uint32_t attention_prefill_rows(uint32_t head_dim, uint32_t workgroup_bytes);

}  // namespace wgllm::kernels
