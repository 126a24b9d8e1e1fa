// Causal attention for every token of a pass: token i (workgroup x) at position pos of slot s attends over
// cache rows s * CTX + start..pos, query heads y * HEADS.. (workgroup y: HEADS heads of one GQA group, which
// read each key and value row once for all of them; kernels/attention.hpp) reading kv head h / (N_HEADS / N_KV);
// start is 0, or with WINDOW (sliding-window attention, Mistral) pos - WINDOW + 1 once pos reaches WINDOW,
// or with CHUNK (Llama 4's chunked attention) the start of pos's chunk, pos - pos % CHUNK.
// The pass's own keys were written by rope_kv before this runs, so prompt tokens of one pass attend to each
// other causally. A token's arithmetic depends only on its own (slot, pos, q) and the cache: never on the
// other tokens of the pass (batch invariance).
// Keys go in tiles of WG (an invocation per key in q·k) with an online softmax (running max m and sum l,
// rescaled per tile), so no scores buffer is needed at any context length; a tile's maximum and
// sum reduce through subgroups where the adapter has them (SUBGROUPS), else through workgroup memory; the
// p·V sum splits each tile's keys over SPLIT groups of HEAD_DIM / 4 invocations (a vector of the head
// each), added up in a fixed order at the end.
// qkv [tokens, q | k | v] (q: N_HEADS*HEAD_DIM); caches [slots * CTX, N_KV*HEAD_DIM]; out [tokens, N_HEADS*HEAD_DIM].
// HEAD_DIM is a multiple of 4 and at most 256.
// With SPANS (split-sequence attention, for passes of few tokens at long positions): positions go in spans
// of SPAN keys (a multiple of WG, or fewer: one partial tile), one workgroup per (token, head, span), so a decode token's keys are read
// by the workgroups of the spans that [start, pos] meets at once instead of one. (Workgroups along y: (head group, span).) Workgroups of other spans
// exit at once. A token whose keys lie in one span writes its output here; otherwise each span leaves its
// unnormalised output, max and sum in part [tokens, N_HEADS, SPANS, HEAD_DIM + 2], and MERGE (a second
// dispatch, one workgroup per (token, head)) adds them up in span order. The spans depend only on the
// token's position, so batch invariance holds.
// Each reduction reads its result from an array of its own, written again only in the next tile, and needs
// no barrier after that read: under Dawn's OpenGL ES backend, Mesa's GLSL compiler (22.3) moves a read of
// workgroup memory whose value is used once down to that use, across barrier() (its tree grafting does not
// stop at barriers). With one array for both, `r = red[0]; barrier(); m_new = max(m, r); ...; red[tid] = e`
// read the e of the invocations that had run ahead (llvmpipe runs a workgroup as SIMD groups of 8, one after
// another between barriers): wrong from position 8 on.
#if SUBGROUPS
enable subgroups;
#endif
#use step_params
#use attention_keys
@group(0) @binding(0) var<storage, read> tokens: array<Token>;

// 128 invocations where heads fit (a tile is a span's 128 keys, all of them busy in q·k): twice the
// resident workgroups of 256, 8B at depth 4096 +8 % on the H200 (docs/perf.md).
const WG = select(256u, 128u, HEAD_DIM <= 128u);
const PART = HEAD_DIM + 2u;  // a span's part: output, max, sum

#if MERGE
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// An invocation per element of the head. The spans' maxima and sums are read at once (an invocation per
// span) and each span's weight exp(max - m) computed once into workgroup memory, so an output element's
// sum waits for batches of its spans' loads instead of a chain of a load and an exp per span: the merge
// was a quarter of the 8B step at depth 4096 on the H100 (docs/perf.md). The additions keep span order.
const MERGE_WG = HEAD_DIM;
const MERGE_BATCH = 8u;  // spans whose loads an element's sum issues together
var<workgroup> span_max: array<f32, SPANS>;
var<workgroup> span_sum: array<f32, SPANS>;
var<workgroup> span_weight: array<f32, SPANS>;

// The result of a token's spans s0..s1: each span's output and sum rescaled to the largest max.
@compute @workgroup_size(MERGE_WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let pos = tokens[wid.x].pos;
  let s0 = first_key(pos) / SPAN;  // the token's spans: s0..s1
  let s1 = pos / SPAN;
  if (s0 == s1) {
    return;  // one span: written by the attention dispatch
  }
  let h = wid.y;
  let first = (wid.x * N_HEADS + h) * SPANS;
  for (var s = s0 + tid; s <= s1; s += MERGE_WG) {
    span_max[s] = part[(first + s) * PART + HEAD_DIM];
    span_sum[s] = part[(first + s) * PART + HEAD_DIM + 1u];
  }
  workgroupBarrier();
  var m = span_max[s0];
  for (var s = s0 + 1u; s <= s1; s++) {
    m = max(m, span_max[s]);
  }
  for (var s = s0 + tid; s <= s1; s += MERGE_WG) {
    span_weight[s] = exp(span_max[s] - m);
  }
  workgroupBarrier();
  var l = 0.0;
  for (var s = s0; s <= s1; s++) {
    l += span_sum[s] * span_weight[s];
  }
  let d = tid;
  var o = 0.0;
  for (var b = s0; b <= s1; b += MERGE_BATCH) {
    var v: array<f32, MERGE_BATCH>;
    for (var u = 0u; u < MERGE_BATCH; u++) {
      v[u] = part[(first + min(b + u, s1)) * PART + d];
    }
    for (var u = 0u; u < MERGE_BATCH; u++) {
      if (b + u <= s1) {
        o += v[u] * span_weight[b + u];
      }
    }
  }
  out[(wid.x * N_HEADS + h) * HEAD_DIM + d] = o / l;
}
#else
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
#if SPANS
@group(0) @binding(5) var<storage, read_write> part: array<f32>;
#endif

const KV_DIM = N_KV * HEAD_DIM;
const GROUP = N_HEADS / N_KV;
const QKV = (N_HEADS + 2u * N_KV) * HEAD_DIM;
const D4 = HEAD_DIM / 4u;
// The p·V sum: key groups of D4 invocations, each invocation a vector of the head's elements, so that a
// row of V is one coalesced read by a group and a tile's keys are a chain of WG / SPLIT loads per
// invocation (a scalar per invocation and WG / HEAD_DIM groups made chains 4x longer: 1B tg128 -11 % on
// the H100, docs/perf.md).
const SPLIT = WG / D4;
const PV_KEYS = 16u;
const NONE = -3.0e38;

// Per head of the workgroup's HEADS: [head][...]
var<workgroup> q: array<vec4<f32>, HEADS * D4>;
var<workgroup> p: array<f32, HEADS * WG>;        // this tile's exp(score - m)
var<workgroup> red_max: array<f32, HEADS * WG>;
// The sums' reductions use .x; then the SPLIT groups' partial outputs, a vector per invocation and head.
var<workgroup> red_sum: array<vec4<f32>, HEADS * WG>;

// Every Heads variable has an explicit Heads() initialiser: declared without one inside the tile loop, its
// values were not zeroed again in each iteration on lavapipe (wrong from the second tile on).
alias Heads = array<f32, HEADS>;
alias HeadVectors = array<vec4<f32>, HEADS>;

// With subgroups, each subgroup's maximum or sum of a head goes to one slot and every invocation reads the
// WG / sg slots in order (one barrier for all heads, a fixed order: the same bits for every token);
// otherwise a tree over all. sg: the subgroup size where subgroups take the first steps (0: workgroup
// memory only).
fn reduce_max(tid: u32, v: Heads, sg: u32) -> Heads {
  var r = Heads();
#if SUBGROUPS
  if (sg >= 8u) {
    for (var h = 0u; h < HEADS; h++) {
      let m = subgroupMax(v[h]);
      if (tid % sg == 0u) {
        red_max[h * WG + tid / sg] = m;
      }
    }
    workgroupBarrier();
    for (var h = 0u; h < HEADS; h++) {
      r[h] = red_max[h * WG];
      for (var i = 1u; i < WG / sg; i++) {
        r[h] = max(r[h], red_max[h * WG + i]);
      }
    }
    return r;
  }
#endif
  for (var h = 0u; h < HEADS; h++) {
    red_max[h * WG + tid] = v[h];
  }
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      for (var h = 0u; h < HEADS; h++) {
        red_max[h * WG + tid] = max(red_max[h * WG + tid], red_max[h * WG + tid + s]);
      }
    }
    workgroupBarrier();
  }
  for (var h = 0u; h < HEADS; h++) {
    r[h] = red_max[h * WG];
  }
  return r;
}

fn reduce_sum(tid: u32, v: Heads, sg: u32) -> Heads {
  var r = Heads();
#if SUBGROUPS
  if (sg >= 8u) {
    for (var h = 0u; h < HEADS; h++) {
      let total = subgroupAdd(v[h]);
      if (tid % sg == 0u) {
        red_sum[h * WG + tid / sg].x = total;
      }
    }
    workgroupBarrier();
    for (var h = 0u; h < HEADS; h++) {
      r[h] = red_sum[h * WG].x;
      for (var i = 1u; i < WG / sg; i++) {
        r[h] += red_sum[h * WG + i].x;
      }
    }
    return r;
  }
#endif
  for (var h = 0u; h < HEADS; h++) {
    red_sum[h * WG + tid].x = v[h];
  }
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      for (var h = 0u; h < HEADS; h++) {
        red_sum[h * WG + tid].x += red_sum[h * WG + tid + s].x;
      }
    }
    workgroupBarrier();
  }
  for (var h = 0u; h < HEADS; h++) {
    r[h] = red_sum[h * WG].x;
  }
  return r;
}

// Vector d4 of the V rows (kv head at element kv) of a tile's keys i0, i0 + SPLIT, .. (PV_KEYS of them; the
// tile's last, len - 1, in place of those past it), the tile starting at cache row `row0`.
fn v_batch(row0: u32, kv: u32, d4: u32, i0: u32, len: u32) -> array<vec4<f32>, PV_KEYS> {
  var v: array<vec4<f32>, PV_KEYS>;
  for (var u = 0u; u < PV_KEYS; u++) {
    v[u] = v_cache[((row0 + min(i0 + u * SPLIT, len - 1u)) * KV_DIM + kv) / 4u + d4];
  }
  return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>
#if SUBGROUPS
        , @builtin(subgroup_size) sg_size: u32
#endif
) {
#if SUBGROUPS
  let sg = sg_size;
#else
  let sg = 0u;
#endif
  let t = tokens[wid.x];
  let n = t.pos + 1u;
  let start = first_key(t.pos);
#if SPANS
  // (head group, span) along y, folded into z past the per-dimension limit
  let hs = wid.y + wid.z * groups.y;
  let h0 = (hs % (N_HEADS / HEADS)) * HEADS;
  let span = hs / (N_HEADS / HEADS);
  if (span >= SPANS || span * SPAN >= n || span < start / SPAN) {
    return;
  }
  let begin = max(span * SPAN, start);
  let end = min(n, span * SPAN + SPAN);
#else
  let h0 = wid.y * HEADS;
  let begin = start;
  let end = n;
#endif
  let first = t.slot * CTX;  // cache row of position 0
  let kv = (h0 / GROUP) * HEAD_DIM;
  for (var i = tid; i < HEADS * D4; i += WG) {
    q[i] = qkv[(wid.x * QKV + h0 * HEAD_DIM) / 4u + i];
  }
  workgroupBarrier();
  let g = tid / D4;  // p·V: key group and vector
  let d4 = tid % D4;
  var m = Heads();
  var l = Heads();
  var acc = HeadVectors();
  for (var h = 0u; h < HEADS; h++) {
    m[h] = NONE;
  }
  for (var t0 = begin; t0 < end; t0 += WG) {
    let j = t0 + tid;
    var s = Heads();
    for (var h = 0u; h < HEADS; h++) {
      s[h] = NONE;
    }
    if (j < end) {
      let k = ((first + j) * KV_DIM + kv) / 4u;
      var qk = Heads();
      for (var e = 0u; e < D4; e++) {
        let key = k_cache[k + e];
        for (var h = 0u; h < HEADS; h++) {
          qk[h] += dot(q[h * D4 + e], key);
        }
      }
      for (var h = 0u; h < HEADS; h++) {
        s[h] = qk[h] * SCALE;
      }
    }
    // The group's first batch of V rows is loaded before the softmax's reductions, whose barriers then
    // wait out its memory round trip (8B tg128 +1.4 % on the H100, docs/perf.md).
    let len = min(WG, end - t0);
    var v_first: array<vec4<f32>, PV_KEYS>;
    if (g < SPLIT) {
      v_first = v_batch(first + t0, kv, d4, g, len);
    }
    let tile_max = reduce_max(tid, s, sg);
    var m_new = Heads();
    var e = Heads();
    var corr = Heads();
    for (var h = 0u; h < HEADS; h++) {
      m_new[h] = max(m[h], tile_max[h]);
      e[h] = select(0.0, exp(s[h] - m_new[h]), j < end);
      p[h * WG + tid] = e[h];
      corr[h] = exp(m[h] - m_new[h]);
    }
    let tile_sum = reduce_sum(tid, e, sg);
    for (var h = 0u; h < HEADS; h++) {
      l[h] = l[h] * corr[h] + tile_sum[h];
    }
    if (g < SPLIT) {
      var a = HeadVectors();
      // PV_KEYS of the group's keys at a time, their loads first: each batch waits one memory round trip,
      // so a tile of 128 keys on 8B takes 2 batches of 16 per group instead of 8 of 4 (8B tg128 +4.3 %,
      // depth 4096 +6 % on the H200; 8 or 32 keys gained less, docs/perf.md). The group still adds its keys
      // in increasing order: the same bits.
      for (var i0 = g; i0 < len; i0 += PV_KEYS * SPLIT) {
        var v = v_first;
        if (i0 != g) {
          v = v_batch(first + t0, kv, d4, i0, len);
        }
        for (var u = 0u; u < PV_KEYS; u++) {
          let i = i0 + u * SPLIT;
          if (i < len) {
            for (var h = 0u; h < HEADS; h++) {
              a[h] += p[h * WG + i] * v[u];
            }
          }
        }
      }
      for (var h = 0u; h < HEADS; h++) {
        acc[h] = acc[h] * corr[h] + a[h];
      }
    }
    m = m_new;
    workgroupBarrier();
  }
  // The key groups' outputs added in group order, a (head, vector) pair per invocation.
  if (g < SPLIT) {
    for (var h = 0u; h < HEADS; h++) {
      red_sum[h * WG + tid] = acc[h];
    }
  }
  workgroupBarrier();
  for (var i = tid; i < HEADS * D4; i += WG) {
    let h = i / D4;
    let v = i % D4;
    var o = vec4<f32>(0.0);
    for (var k = 0u; k < SPLIT; k++) {
      o += red_sum[h * WG + k * D4 + v];
    }
#if SPANS
    if (start / SPAN != t.pos / SPAN) {
      let at = ((wid.x * N_HEADS + h0 + h) * SPANS + span) * PART + 4u * v;
      part[at] = o.x;
      part[at + 1u] = o.y;
      part[at + 2u] = o.z;
      part[at + 3u] = o.w;
      if (v == 0u) {
        part[at + HEAD_DIM] = m[h];
        part[at + HEAD_DIM + 1u] = l[h];
      }
      continue;
    }
#endif
    out[((wid.x * N_HEADS + h0 + h) * HEAD_DIM) / 4u + v] = o / l[h];
  }
}
#endif
