// Picks the next token of every logits row of a pass on the GPU, each row with its own sequence's settings,
// in llama.cpp's default order: penalties over the sequence's last penalty_last_n tokens (repetition, then
// OpenAI's presence and frequency) -> top-k -> top-p -> min-p -> temperature -> draw. temperature <= 0 is
// greedy (lowest id among equal maxima). The id goes to sampled[slot] (read by a later pass's embedding, so
// generation never waits for the CPU) and into the slot's penalty history ring.
//
// Two dispatches (kernels/sample.hpp), so that a row of 128k logits is read by many workgroups at once:
// - reduce (workgroups rows x PARTS): the workgroup of (row, part) penalises the history's tokens of its
//   part of PART logits, reads the part once, coalesced (invocation t reads t, t + WG, ...), and leaves in
//   `partials` either its maximum and that maximum's lowest id (greedy) or its K largest logits
//   (K = min(top_k or K_CAP, K_CAP)) as (key, id) pairs.
// - MERGE (one workgroup per row): the row's maximum over the parts' maxima, or its K largest over the
//   parts' candidates (the row's K largest are among them: a logit outranked by K others of its own part
//   is outranked by K in the row), sorted, then the draw.
// "Largest" is one total order everywhere: by order-preserving bit key descending, then id ascending, so
// ties at the cut keep the lowest ids and nothing depends on the order in which invocations read, count or
// gather. The K largest are found by a radix select (8-bit digits, histograms in workgroup memory) that
// starts below the bits all candidates share and stops as soon as the cut's bucket holds exactly what is
// still needed; ties of a whole key are then cut on the ids by the same select. Greedy compares floats,
// as llama.cpp's argmax does. With top-k off the nucleus is cut at the K_CAP most likely tokens.
// Every step is a function of the row's logits, history and settings alone: the same token alone or beside
// other rows.
#use step_params

const WG = 256u;  // also the radix histogram's bins: invocation t holds a digit in radix_pass
const K_CAP = 256u;
const PART_K = min(K_CAP, PART);            // candidate slots of a part
const ROW_WORDS = 2u * PARTS * PART_K;      // a row's partials: [PARTS * PART_K keys | as many ids]
const IDS = PARTS * PART_K;                 // offset of the ids within a row's partials
const LAST = N_VOCAB - (PARTS - 1u) * PART; // logits of the last part
const NONE = 0xFFFFFFFFu;

@group(0) @binding(0) var<storage, read> rows: array<Row>;
#if MERGE
@group(0) @binding(1) var<storage, read> partials: array<u32>;
@group(0) @binding(2) var<storage, read_write> all_history: array<u32>;  // [slots][HISTORY ring, count]
@group(0) @binding(3) var<storage, read_write> sampled: array<u32>;      // [slots]
const SLOTS = (PARTS * PART_K + WG - 1u) / WG;  // candidates per invocation, at most
#else
@group(0) @binding(1) var<storage, read_write> all_logits: array<f32>;   // [rows, N_VOCAB]
@group(0) @binding(2) var<storage, read> all_history: array<u32>;        // [slots][HISTORY ring, count]
@group(0) @binding(3) var<storage, read_write> partials: array<u32>;     // [rows, ROW_WORDS]
const SLOTS = (PART + WG - 1u) / WG;  // logits of the part per invocation
#endif

var<workgroup> red_a: array<u32, WG>;
var<workgroup> red_b: array<u32, WG>;
var<workgroup> red_f: array<f32, WG>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> bucket: vec3<u32>;  // a radix pass's (digit, still needed, count in the digit's bucket)
var<workgroup> lo_hi: vec2<u32>;
var<workgroup> gathered: atomic<u32>;

// This invocation's elements (logits of the part, or the row's candidates): element tid + i * WG in
// slot i, the first `count` of the workgroup's elements valid.
var<private> tid: u32;
var<private> count: u32;
var<private> keys: array<u32, SLOTS>;

fn key_of(f: f32) -> u32 {
  let b = bitcast<u32>(f);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn logit_of(key: u32) -> f32 {
  return bitcast<f32>(select(~key, key & 0x7FFFFFFFu, (key & 0x80000000u) != 0u));
}

fn element(i: u32) -> u32 {
  return tid + i * WG;
}

fn valid(i: u32) -> bool {
  return element(i) < count;
}

// The K of a row: top-k, capped at K_CAP and at the vocabulary.
fn row_k(step: Row) -> u32 {
  var k = K_CAP;
  if (step.top_k > 0u) {
    k = min(step.top_k, K_CAP);
  }
  return min(k, N_VOCAB);
}

// Inclusive prefix sum of v over the invocations, and the total.
fn scan(v: u32) -> vec2<u32> {
  red_a[tid] = v;
  workgroupBarrier();
  for (var off = 1u; off < WG; off <<= 1u) {
    var add = 0u;
    if (tid >= off) {
      add = red_a[tid - off];
    }
    workgroupBarrier();
    red_a[tid] += add;
    workgroupBarrier();
  }
  let r = vec2<u32>(red_a[tid], red_a[WG - 1u]);
  workgroupBarrier();
  return r;
}

fn scan_f(v: f32) -> vec2<f32> {
  red_f[tid] = v;
  workgroupBarrier();
  for (var off = 1u; off < WG; off <<= 1u) {
    var add = 0.0;
    if (tid >= off) {
      add = red_f[tid - off];
    }
    workgroupBarrier();
    red_f[tid] += add;
    workgroupBarrier();
  }
  let r = vec2<f32>(red_f[tid], red_f[WG - 1u]);
  workgroupBarrier();
  return r;
}

// A cut on one word: the selected elements have (word & mask) > prefix, or == prefix and pass the next cut.
struct Cut {
  prefix: u32,
  mask: u32,
}
// The K largest: by key, then (among equal keys at the cut) by id, smaller first.
struct Selection {
  key: Cut,
  id: Cut,
}

// Stage 0 ranks the keys; stage 1 the complemented ids of the elements whose key is `tie`.
fn rank_word(stage: u32, i: u32) -> u32 {
  if (stage == 0u) {
    return keys[i];
  }
  return ~element_id(i);
}

fn member(stage: u32, i: u32, tie: u32) -> bool {
  return valid(i) && (stage == 0u || keys[i] == tie);
}

// Whether slot i is among the selection (its id looked up only where the key does not decide).
fn is_selected(s: Selection, i: u32) -> bool {
  let k = keys[i] & s.key.mask;
  return valid(i) && (k > s.key.prefix || (k == s.key.prefix && (~element_id(i) & s.id.mask) >= s.id.prefix));
}

// The smallest and largest word of the stage's members, uniform.
fn word_range(stage: u32, tie: u32) -> vec2<u32> {
  var lo = NONE;
  var hi = 0u;
  for (var i = 0u; i < SLOTS; i++) {
    if (member(stage, i, tie)) {
      let w = rank_word(stage, i);
      lo = min(lo, w);
      hi = max(hi, w);
    }
  }
  red_a[tid] = lo;
  red_b[tid] = hi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      red_a[tid] = min(red_a[tid], red_a[tid + s]);
      red_b[tid] = max(red_b[tid], red_b[tid + s]);
    }
    workgroupBarrier();
  }
  if (tid == 0u) {
    lo_hi = vec2<u32>(red_a[0], red_b[0]);
  }
  return workgroupUniformLoad(&lo_hi);
}

// One radix pass: histogram of the digit (word >> shift) of `width` bits over the members matching prefix
// under mask, and the highest digit at which the count from the top reaches `needed`. Returns that digit,
// what is still needed inside its bucket, and the bucket's count, uniform.
fn radix_pass(stage: u32, tie: u32, prefix: u32, mask: u32, shift: u32, width: u32,
              needed: u32) -> vec3<u32> {
  atomicStore(&hist[tid], 0u);
  workgroupBarrier();
  let digits = (1u << width) - 1u;
  for (var i = 0u; i < SLOTS; i++) {
    if (member(stage, i, tie)) {
      let w = rank_word(stage, i);
      if ((w & mask) == prefix) {
        atomicAdd(&hist[(w >> shift) & digits], 1u);
      }
    }
  }
  workgroupBarrier();
  // Invocation t holds digit 255 - t: its inclusive prefix is the count of that digit and all above.
  let d = WG - 1u - tid;
  let c = atomicLoad(&hist[d]);
  let from_top = scan(c).x;
  if (from_top >= needed && from_top - c < needed) {
    bucket = vec3<u32>(d, needed - (from_top - c), c);
  }
  return workgroupUniformLoad(&bucket);
}

fn low_bits(n: u32) -> u32 {
  return select((1u << n) - 1u, NONE, n >= 32u);
}

// The k largest of the workgroup's `count` elements (k < count), by the total order.
fn select_largest(k: u32) -> Selection {
  var s = Selection(Cut(0u, 0u), Cut(0u, 0u));
  var needed = k;
  var tie = 0u;
  for (var stage = 0u; stage < 2u; stage++) {
    // Bits above the highest one in which the members differ are common to all: no pass needed there.
    let r = word_range(stage, tie);
    var bits = 32u - countLeadingZeros(r.x ^ r.y);
    var mask = ~low_bits(bits);
    var prefix = r.y & mask;
    var done = stage == 1u;  // ids are distinct: the id stage always ends with the exact count
    loop {
      if (bits == 0u) {
        break;
      }
      let width = min(8u, bits);
      let shift = bits - width;
      let b = radix_pass(stage, tie, prefix, mask, shift, width, needed);
      prefix |= b.x << shift;
      mask |= low_bits(width) << shift;
      needed = b.y;
      bits = shift;
      if (b.z == needed) {
        done = true;
        break;
      }
    }
    if (stage == 0u) {
      s.key = Cut(prefix, mask);
      if (done) {
        break;
      }
      tie = prefix;  // mask is whole: more elements share the cut's key than are needed
    } else {
      s.id = Cut(prefix, mask);
    }
  }
  return s;
}

// The largest of the invocations' (logit, id) pairs, the lowest id among equals; its logit is left in
// red_f[0]. Every invocation calls it (barriers).
fn argmax_of_workgroup(best: f32, best_id: u32) -> u32 {
  red_f[tid] = best;
  red_a[tid] = best_id;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      let l = red_f[tid + s];
      let id = red_a[tid + s];
      if (id != NONE && (l > red_f[tid] || (l == red_f[tid] && id < red_a[tid]) || red_a[tid] == NONE)) {
        red_f[tid] = l;
        red_a[tid] = id;
      }
    }
    workgroupBarrier();
  }
  return red_a[0];
}

#if MERGE
var<private> row_base: u32;

fn element_id(i: u32) -> u32 {
  return partials[row_base + IDS + element(i)];
}

fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

var<workgroup> cand_key: array<u32, K_CAP>;
var<workgroup> cand_id: array<u32, K_CAP>;
var<workgroup> cut_at: atomic<u32>;

// The row's greedy id: the largest of the parts' maxima, the lowest id among equals.
fn merge_max() -> u32 {
  var best = -3.4e38;
  var best_id = NONE;
  for (var p = tid; p < PARTS; p += WG) {
    let l = bitcast<f32>(partials[row_base + p]);
    let id = partials[row_base + IDS + p];
    if (l > best || (l == best && id < best_id) || best_id == NONE) {
      best = l;
      best_id = id;
    }
  }
  return argmax_of_workgroup(best, best_id);
}

// The smallest i + 1 over the invocations where `hit`, or `none` where nowhere.
fn first_hit(hit: bool, i: u32, none: u32) -> u32 {
  if (tid == 0u) {
    atomicStore(&cut_at, none);
  }
  workgroupBarrier();
  if (hit) {
    atomicMin(&cut_at, i + 1u);
  }
  workgroupBarrier();
  let r = atomicLoad(&cut_at);
  workgroupBarrier();
  return r;
}

// The draw over the row's K largest, sorted in cand_key/cand_id: returns the index of the drawn one.
fn draw(step: Row, k: u32) -> u32 {
  if (k == 1u) {
    return 0u;
  }
  let i = tid;
  let top = logit_of(cand_key[0]);
  var l = top;
  if (i < k) {
    l = logit_of(cand_key[i]);
  }
  var keep = k;
  // top-p over the untempered distribution of the candidates: the shortest prefix reaching top_p.
  if (step.top_p < 1.0) {
    let cum = scan_f(select(0.0, exp(l - top), i < k));
    keep = first_hit(i < k && cum.x / cum.y >= step.top_p, i, keep);
  }
  // min-p: p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p); the first one is always kept.
  if (step.min_p > 0.0) {
    keep = first_hit(i >= 1u && i < keep && l < top + log(step.min_p), i - 1u, keep);
  }
  let cum = scan_f(select(0.0, exp((l - top) / step.temperature), i < keep));
  let r = pcg(step.seed ^ pcg(step.sample_index));
  let u = f32(r >> 8u) / 16777216.0 * cum.y;
  return first_hit(i < keep && u < cum.x, i, keep) - 1u;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  tid = local;
  let step = rows[wid.x];
  row_base = wid.x * ROW_WORDS;
  let history_base = step.slot * (HISTORY + 1u);
  let seen_total = all_history[history_base + HISTORY];  // loaded now, used at the end
  var id = 0u;
  if (step.temperature <= 0.0) {
    id = merge_max();
  } else {
    let k = row_k(step);
    let per_part = min(k, PART);
    let n = (PARTS - 1u) * per_part + min(k, LAST);
    count = n;
    for (var i = 0u; i < SLOTS; i++) {
      if (valid(i)) {
        keys[i] = partials[row_base + element(i)];
      }
    }
    if (tid == 0u) {
      atomicStore(&gathered, 0u);
    }
    var s = Selection(Cut(0u, 0u), Cut(0u, 0u));  // everything
    if (k < n) {
      s = select_largest(k);
    }
    workgroupBarrier();
    for (var i = 0u; i < SLOTS; i++) {
      if (is_selected(s, i)) {
        let at = atomicAdd(&gathered, 1u);
        cand_key[at] = keys[i];
        cand_id[at] = element_id(i);
      }
    }
    // Bitonic sort of the next power of two >= k: key descending, id ascending (padding last).
    let padded = 1u << (32u - countLeadingZeros(k - 1u));
    if (tid >= k && tid < padded) {
      cand_key[tid] = 0u;
      cand_id[tid] = NONE;
    }
    workgroupBarrier();
    for (var size = 2u; size <= padded; size <<= 1u) {
      for (var stride = size / 2u; stride > 0u; stride >>= 1u) {
        let i = tid;
        let j = i ^ stride;
        if (j > i && j < padded) {
          let ki = cand_key[i];
          let kj = cand_key[j];
          let i_first = ki > kj || (ki == kj && cand_id[i] < cand_id[j]);
          if (i_first != ((i & size) == 0u)) {
            cand_key[i] = kj;
            cand_key[j] = ki;
            let t = cand_id[i];
            cand_id[i] = cand_id[j];
            cand_id[j] = t;
          }
        }
        workgroupBarrier();
      }
    }
    id = cand_id[draw(step, k)];
  }
  if (tid == 0u) {
    sampled[step.slot] = id;
    all_history[history_base + seen_total % HISTORY] = id;
    all_history[history_base + HISTORY] = seen_total + 1u;
  }
}

#else
var<private> part_first: u32;  // id of the part's first logit

fn element_id(i: u32) -> u32 {
  return part_first + element(i);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  tid = local;
  let step = rows[wid.x];
  let part = wid.y;
  let first_id = part * PART;
  let n = min(PART, N_VOCAB - first_id);
  part_first = first_id;
  count = n;
  let logit_base = wid.x * N_VOCAB + first_id;
  let out = wid.x * ROW_WORDS;

  // Penalties on the part's tokens of the recent history, once per distinct token (its most recent
  // occurrence applies them). Without penalties the logits' loads need not wait for the history's.
  let penalise = step.repeat_penalty != 1.0 || step.presence_penalty != 0.0 || step.frequency_penalty != 0.0;
  if (penalise) {
    let history_base = step.slot * (HISTORY + 1u);
    let seen_total = all_history[history_base + HISTORY];
    let n_hist = min(min(seen_total, HISTORY), step.penalty_last_n);
    if (tid < n_hist) {
      let id = all_history[history_base + (seen_total - 1u - tid) % HISTORY];
      if (id >= first_id && id - first_id < n) {
        var first = true;
        var seen = 0u;
        for (var j = 0u; j < n_hist; j++) {
          if (all_history[history_base + (seen_total - 1u - j) % HISTORY] == id) {
            first = first && j >= tid;
            seen++;
          }
        }
        if (first) {
          var l = all_logits[logit_base + id - first_id];
          if (step.repeat_penalty != 1.0) {
            l = select(l * step.repeat_penalty, l / step.repeat_penalty, l > 0.0);
          }
          all_logits[logit_base + id - first_id] =
              l - (f32(seen) * step.frequency_penalty + step.presence_penalty);
        }
      }
    }
    storageBarrier();
    workgroupBarrier();
  }

  // The part's logits, each read once: as float bits here, as order keys for the select below.
  for (var i = 0u; i < SLOTS; i++) {
    if (valid(i)) {
      keys[i] = bitcast<u32>(all_logits[logit_base + element(i)]);
    }
  }

  if (step.temperature <= 0.0) {
    // The part's largest logit, the lowest id among equals.
    var best = -3.4e38;
    var best_id = NONE;
    for (var i = 0u; i < SLOTS; i++) {
      if (valid(i)) {
        let l = bitcast<f32>(keys[i]);
        if (l > best || best_id == NONE) {
          best = l;
          best_id = element_id(i);
        }
      }
    }
    let id = argmax_of_workgroup(best, best_id);
    if (tid == 0u) {
      partials[out + part] = bitcast<u32>(red_f[0]);
      partials[out + IDS + part] = id;
    }
    return;
  }

  let k = row_k(step);
  let kp = min(k, n);
  for (var i = 0u; i < SLOTS; i++) {
    keys[i] = key_of(bitcast<f32>(keys[i]));
  }
  if (tid == 0u) {
    atomicStore(&gathered, 0u);
  }
  var s = Selection(Cut(0u, 0u), Cut(0u, 0u));  // everything
  if (kp < n) {
    s = select_largest(kp);
  }
  workgroupBarrier();
  let first_slot = out + part * min(k, PART);
  for (var i = 0u; i < SLOTS; i++) {
    if (is_selected(s, i)) {
      let at = atomicAdd(&gathered, 1u);
      partials[first_slot + at] = keys[i];
      partials[first_slot + IDS + at] = element_id(i);
    }
  }
}
#endif
