// Picks the next token of every logits row of a pass on the GPU, one workgroup per row (workgroup x), each
// row with its own sequence's settings, in llama.cpp's default order: penalties over the sequence's last
// penalty_last_n tokens (repetition, then OpenAI's presence and frequency) -> top-k -> top-p -> min-p ->
// temperature -> draw. temperature <= 0 is greedy (lowest id among equal maxima). The id goes to
// sampled[slot] (read by a later pass's embedding, so generation never waits for the CPU) and into the
// slot's penalty history ring.
// Greedy is one argmax pass. Otherwise the candidates are the K = min(top_k or K_CAP, K_CAP) largest logits:
// a radix select over the logits' order-preserving bit keys (4 passes, 8 bits each, histograms in
// workgroup memory) finds the K-th largest key exactly; one pass gathers the candidates in index order and
// a bitonic sort orders them by (logit desc, id asc), so the result is deterministic. With top-k off, the
// nucleus is cut at the K_CAP most likely tokens.
#use step_params

@group(0) @binding(0) var<storage, read> rows: array<Row>;
@group(0) @binding(1) var<storage, read_write> all_logits: array<f32>;  // [rows, N_VOCAB]
@group(0) @binding(2) var<storage, read_write> all_history: array<u32>;  // [slots][HISTORY ring, count]
@group(0) @binding(3) var<storage, read_write> sampled: array<u32>;      // [slots]

const WG = 256u;
const K_CAP = 256u;
const CHUNK = (N_VOCAB + WG - 1u) / WG;  // each thread owns a contiguous slice: deterministic gathers

var<workgroup> red_u: array<u32, WG>;
var<workgroup> red_f: array<f32, WG>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> digit: u32;
var<workgroup> still_needed: u32;
var<workgroup> cand_logit: array<f32, K_CAP>;
var<workgroup> cand_id: array<u32, K_CAP>;
var<workgroup> chosen: u32;

fn key_of(f: f32) -> u32 {
  let b = bitcast<u32>(f);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Inclusive-then-exclusive scan helper: returns the sum over all threads and leaves the exclusive prefix
// for `tid` in the return's second component.
fn scan(tid: u32, v: u32) -> vec2<u32> {
  red_u[tid] = v;
  workgroupBarrier();
  for (var off = 1u; off < WG; off <<= 1u) {
    var add = 0u;
    if (tid >= off) {
      add = red_u[tid - off];
    }
    workgroupBarrier();
    red_u[tid] += add;
    workgroupBarrier();
  }
  let total = red_u[WG - 1u];
  let exclusive = red_u[tid] - v;
  workgroupBarrier();
  return vec2<u32>(total, exclusive);
}

var<private> logit_base: u32;
var<private> history_base: u32;

fn logit(i: u32) -> f32 {
  return all_logits[logit_base + i];
}
fn set_logit(i: u32, v: f32) {
  all_logits[logit_base + i] = v;
}
fn history(i: u32) -> u32 {
  return all_history[history_base + i];
}
fn set_history(i: u32, v: u32) {
  all_history[history_base + i] = v;
}

fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let step = rows[wid.x];
  logit_base = wid.x * N_VOCAB;
  history_base = step.slot * (HISTORY + 1u);
  let begin = tid * CHUNK;
  let end = min(begin + CHUNK, N_VOCAB);

  // Penalties, once per distinct token of the recent history (its most recent occurrence applies them).
  let count = history(HISTORY);
  let n_hist = min(min(count, HISTORY), step.penalty_last_n);
  let penalise = step.repeat_penalty != 1.0 || step.presence_penalty != 0.0 || step.frequency_penalty != 0.0;
  if (penalise && tid < n_hist) {
    let id = history((count - 1u - tid) % HISTORY);
    var first = true;
    var seen = 0u;
    for (var j = 0u; j < n_hist; j++) {
      if (history((count - 1u - j) % HISTORY) == id) {
        first = first && j >= tid;
        seen++;
      }
    }
    if (first && id < N_VOCAB) {
      var l = logit(id);
      if (step.repeat_penalty != 1.0) {
        l = select(l * step.repeat_penalty, l / step.repeat_penalty, l > 0.0);
      }
      set_logit(id, l - (f32(seen) * step.frequency_penalty + step.presence_penalty));
    }
  }
  storageBarrier();
  workgroupBarrier();

  if (step.temperature <= 0.0) {
    // Greedy: the largest logit, the lowest id among equals.
    var best = -3.4e38;
    var best_id = 0xFFFFFFFFu;
    for (var i = tid; i < N_VOCAB; i += WG) {
      let l = logit(i);
      if (l > best || best_id == 0xFFFFFFFFu) {
        best = l;
        best_id = i;
      }
    }
    red_f[tid] = best;
    red_u[tid] = best_id;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (tid < s) {
        let l = red_f[tid + s];
        let id = red_u[tid + s];
        if (id != 0xFFFFFFFFu && (l > red_f[tid] || (l == red_f[tid] && id < red_u[tid]) || red_u[tid] == 0xFFFFFFFFu)) {
          red_f[tid] = l;
          red_u[tid] = id;
        }
      }
      workgroupBarrier();
    }
    if (tid == 0u) {
      sampled[step.slot] = red_u[0];
      set_history(count % HISTORY, red_u[0]);
      set_history(HISTORY, count + 1u);
    }
    return;
  }

  var k = K_CAP;
  if (step.top_k > 0u) {
    k = min(step.top_k, K_CAP);
  }
  k = min(k, N_VOCAB);

  // Radix select of the k-th largest key, most significant byte first.
  var prefix = 0u;
  var prefix_mask = 0u;
  if (tid == 0u) {
    still_needed = k;
  }
  for (var shift = 24i; shift >= 0i; shift -= 8i) {
    atomicStore(&hist[tid], 0u);
    workgroupBarrier();
    for (var i = tid; i < N_VOCAB; i += WG) {
      let key = key_of(logit(i));
      if ((key & prefix_mask) == prefix) {
        atomicAdd(&hist[(key >> u32(shift)) & 0xFFu], 1u);
      }
    }
    workgroupBarrier();
    if (tid == 0u) {
      var cum = 0u;
      var d = 255i;
      loop {
        let c = atomicLoad(&hist[d]);
        if (cum + c >= still_needed || d == 0i) {
          still_needed -= cum;
          digit = u32(d);
          break;
        }
        cum += c;
        d--;
      }
    }
    let chosen_digit = workgroupUniformLoad(&digit);
    prefix |= chosen_digit << u32(shift);
    prefix_mask |= 0xFFu << u32(shift);
  }
  let threshold = prefix;
  // Gather: every key above the threshold, then ties at it by increasing id, up to k.
  var above = 0u;
  var equal = 0u;
  for (var i = begin; i < end; i++) {
    let key = key_of(logit(i));
    above += select(0u, 1u, key > threshold);
    equal += select(0u, 1u, key == threshold);
  }
  let a = scan(tid, above);
  let e = scan(tid, equal);
  var pos_above = a.y;
  var pos_equal = a.x + e.y;
  for (var i = begin; i < end; i++) {
    let key = key_of(logit(i));
    if (key > threshold) {
      cand_logit[pos_above] = logit(i);
      cand_id[pos_above] = i;
      pos_above++;
    } else if (key == threshold && pos_equal < k) {
      cand_logit[pos_equal] = logit(i);
      cand_id[pos_equal] = i;
      pos_equal++;
    }
  }
  for (var i = k + tid; i < K_CAP; i += WG) {
    cand_logit[i] = -3.4e38;
    cand_id[i] = 0xFFFFFFFFu;
  }
  workgroupBarrier();

  // Bitonic sort of K_CAP candidates: logit descending, id ascending.
  for (var size = 2u; size <= K_CAP; size <<= 1u) {
    for (var stride = size / 2u; stride > 0u; stride >>= 1u) {
      for (var i = tid; i < K_CAP; i += WG) {
        let j = i ^ stride;
        if (j > i) {
          let descending = (i & size) == 0u;
          let li = cand_logit[i];
          let lj = cand_logit[j];
          let i_first = li > lj || (li == lj && cand_id[i] < cand_id[j]);
          if (i_first != descending) {
            cand_logit[i] = lj;
            cand_logit[j] = li;
            let t = cand_id[i];
            cand_id[i] = cand_id[j];
            cand_id[j] = t;
          }
        }
      }
      workgroupBarrier();
    }
  }

  if (tid == 0u) {
    var pick = 0u;
    if (k > 1u) {
      let top = cand_logit[0];
      var keep = k;
      // top-p over the untempered distribution of the candidates.
      if (step.top_p < 1.0) {
        var z = 0.0;
        for (var i = 0u; i < keep; i++) {
          z += exp(cand_logit[i] - top);
        }
        var cum = 0.0;
        for (var i = 0u; i < keep; i++) {
          cum += exp(cand_logit[i] - top) / z;
          if (cum >= step.top_p) {
            keep = i + 1u;
            break;
          }
        }
      }
      // min-p: p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p).
      if (step.min_p > 0.0) {
        let floor_logit = top + log(step.min_p);
        var n = 1u;
        while (n < keep && cand_logit[n] >= floor_logit) {
          n++;
        }
        keep = n;
      }
      var z = 0.0;
      for (var i = 0u; i < keep; i++) {
        z += exp((cand_logit[i] - top) / step.temperature);
      }
      let r = pcg(step.seed ^ pcg(step.sample_index));
      let u = f32(r >> 8u) / 16777216.0 * z;
      var cum = 0.0;
      pick = keep - 1u;
      for (var i = 0u; i < keep; i++) {
        cum += exp((cand_logit[i] - top) / step.temperature);
        if (u < cum) {
          pick = i;
          break;
        }
      }
    }
    let id = cand_id[pick];
    sampled[step.slot] = id;
    set_history(count % HISTORY, id);
    set_history(HISTORY, count + 1u);
  }
}
