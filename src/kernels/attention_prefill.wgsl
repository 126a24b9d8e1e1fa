// Causal attention for a pass whose tokens all lie in one KV slot (a prompt's chunk: runtime::Forward runs
// it for such passes only, attention.wgsl for the others), by blocks of query rows, so that each key and
// value row is read once per block instead of once per token (flash attention, in f32).
// A query row is a (token, query head) pair: kv head y's rows are token i's heads y G .. y G + G - 1 at
// i G .. i G + G - 1, and workgroup (x, y) takes R of them, x counted from the pass's end so that the
// blocks with the most keys start first. The block's q stays in workgroup memory; each tile of keys is one
// load of its K rows and one of its V rows, both issued a phase early: 4 barriers per tile.
// Keys go in tiles of BK at fixed positions (tile t: keys t BK .. t BK + BK - 1). Each row runs an online
// softmax over the tiles from the block's first key to its last, in order; a tile with none of the row's
// keys (first_key(pos)..pos) leaves its max, sum and output exactly as they were (every score masked:
// weights 0, rescale 1). So a row's arithmetic depends only on its own q, position and the cache, never on
// the other tokens of the pass (batch invariance), and no row reads a cache row past the block's last
// position or before its first key (those load as zeros).
// qkv [tokens, q | k | v]; caches [slots * CTX, N_KV * HEAD_DIM]; out [tokens, N_HEADS * HEAD_DIM].
// Defines: N_HEADS, N_KV, HEAD_DIM (a multiple of 32, at most 128), CTX, SCALE, WINDOW or CHUNK as for
// attention.wgsl, ROWS (R: 16, 32 or 64) and HALVES (1 or 2) (kernels/attention.hpp).
// Private arrays declared inside a loop carry explicit initialisers: without one, lavapipe did not zero them
// again in each iteration (attention.wgsl).
// Bindings: 0 tokens, 1 batch (uniform: the token count first), 2 qkv, 3 k_cache, 4 v_cache, 5 out.
// Dispatch: (ceil(tokens G / R), N_KV) workgroups.
#use step_params
#use attention_keys

struct Batch {
  tokens: u32,
}

@group(0) @binding(0) var<storage, read> tokens: array<Token>;
@group(0) @binding(1) var<uniform> batch: Batch;
@group(0) @binding(2) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> v_cache: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

const R = ROWS;    // query rows per workgroup
const H = HALVES;  // invocations per row and key or output in q·k and p·V: 1, or 2 splitting the head
const WG = 2u * R * H;
const BK = 32u;    // keys per tile
const NC = HEAD_DIM / 32u;
const NCH = NC / H;  // chunks of 32 outputs per invocation
const D4 = HEAD_DIM / 4u;
const G = N_HEADS / N_KV;
const KV_DIM = N_KV * HEAD_DIM;
const QKV = (N_HEADS + 2u * N_KV) * HEAD_DIM;
const NONE = -3.0e38;
// Global loads are issued together before any is stored: the block's q in batches of up to 8 vectors per
// invocation (a divisor of its count), a tile's K and V at once into registers, each under other work: V
// during q·k and the softmax, the next tile's K during p·V (a load-then-store loop waited a memory round
// trip per vector: 8B pp512 -5 % against attention.wgsl; the prefetch: pp512 at depth 3584 +6-7 %,
// docs/perf.md).
const Q_LOADS = R * D4 / WG;    // the block's q: vectors per invocation
const KV_LOADS = BK * D4 / WG;  // a tile's k or v
const Q_BATCH = select(select(select(1u, 2u, Q_LOADS % 2u == 0u), 4u, Q_LOADS % 4u == 0u), 8u, Q_LOADS % 8u == 0u);
// A row of scores: BK / 4 vectors and one of padding, so that the rows the softmax's invocations read at
// once fall in distinct banks.
const SROW = BK / 4u + 1u;

// Invocation tid = 2R h + 8a + b computes the part of the scores of rows 4a..4a+3 against keys 4b..4b+3 over
// half h of the head (H = 2; the whole head with H = 1), and those rows' outputs at elements 32 c + 4b..
// 32 c + 4b + 3 of the head's chunks c = h, h + H, ...; invocations r and R + r (r < R) run row r's softmax,
// each the max over the tile's keys and the weights and sum of half of them (keys 16 q .. 16 q + 15 for
// invocation qR + r), so that no invocation waits idle through it (whatever R and H are, a row's sums run
// over the same halves in the same order: the bits do not depend on the block's shape).
var<workgroup> qt: array<vec4<f32>, HEAD_DIM * R / 4u>;    // the block's q, transposed: [element][row]
var<workgroup> kvt: array<vec4<f32>, HEAD_DIM * BK / 4u>;  // the tile's k, transposed: [element][key]; its v: [key][element]
var<workgroup> st: array<vec4<f32>, H * R * SROW>;         // the tile's scores [half][row][key]
var<workgroup> pt: array<vec4<f32>, BK * R / 4u>;          // the tile's weights exp(s - m), transposed: [key][row]
var<workgroup> row_scale: array<f32, 2u * R>;              // each row's exp(m_old - m_new), then its halves' sums l

// Row r's scores against keys 4 k4..4 k4 + 3 of the tile: the halves' dots added in order, then scaled.
fn tile_scores(r: u32, k4: u32) -> vec4<f32> {
  var s = st[r * SROW + k4];
  for (var h = 1u; h < H; h++) {
    s += st[(h * R + r) * SROW + k4];
  }
  return s * SCALE;
}

alias TileShare = array<vec4<f32>, KV_LOADS>;

// This invocation's vectors of tile k0's K rows (vector tid + u WG: key i % BK, elements 4 (i / BK)..) or V
// rows (key i / D4, elements 4 (i % D4)..), zero outside keys lo..hi; base: the kv head's first vector.
fn load_k(tid: u32, k0: u32, lo: u32, hi: u32, base: u32) -> TileShare {
  var v = TileShare();
  for (var u = 0u; u < KV_LOADS; u++) {
    let i = tid + u * WG;
    let k = k0 + i % BK;
    if (k >= lo && k <= hi) {
      v[u] = k_cache[base + k * (KV_DIM / 4u) + i / BK];
    }
  }
  return v;
}

fn load_v(tid: u32, k0: u32, lo: u32, hi: u32, base: u32) -> TileShare {
  var v = TileShare();
  for (var u = 0u; u < KV_LOADS; u++) {
    let i = tid + u * WG;
    let k = k0 + i / D4;
    if (k >= lo && k <= hi) {
      v[u] = v_cache[base + k * (KV_DIM / 4u) + i % D4];
    }
  }
  return v;
}

// The workgroup is (8, 2R / 8, H), so that b, a and h are local_invocation_id's x, y and z: Tint proves the
// q·k and p·V loops' workgroup-memory indices in bounds and writes no clamps there (matmul.wgsl says why).
@compute @workgroup_size(8u, 2u * R / 8u, H)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let rows = batch.tokens * G;
  let row0 = (groups.x - 1u - wid.x) * R;
  if (row0 >= rows) {
    return;
  }
  let kvh = wid.y;
  // The block's keys: from the first any of its rows attends to through its last position.
  let t1 = min((row0 + R - 1u) / G, batch.tokens - 1u);
  var lo = 0xFFFFFFFFu;
  var hi = 0u;
  for (var t = row0 / G; t <= t1; t++) {
    lo = min(lo, first_key(tokens[t].pos));
    hi = max(hi, tokens[t].pos);
  }
  let cache0 = tokens[row0 / G].slot * CTX;  // cache row of position 0
  let kv_head = kvh * HEAD_DIM;

  for (var l0 = 0u; l0 < Q_LOADS; l0 += Q_BATCH) {
    var v = array<vec4<f32>, Q_BATCH>();
    for (var u = 0u; u < Q_BATCH; u++) {
      let i = tid + (l0 + u) * WG;
      let r = i % R;
      if (row0 + r < rows) {
        let head = kvh * G + (row0 + r) % G;
        v[u] = qkv[((row0 + r) / G) * (QKV / 4u) + head * D4 + i / R];
      }
    }
    for (var u = 0u; u < Q_BATCH; u++) {
      let i = tid + (l0 + u) * WG;
      for (var e = 0u; e < 4u; e++) {
        qt[(4u * (i / R) + e) * (R / 4u) + (i % R) / 4u][i % 4u] = v[u][e];
      }
    }
  }

  // Softmax row sr's keys (none for rows past the pass) and online-softmax state over tile keys of half sq.
  let sr = tid % R;
  let sq = tid / R;
  var key_first = 1u;
  var key_last = 0u;
  if (tid < 2u * R && row0 + sr < rows) {
    key_last = tokens[(row0 + sr) / G].pos;
    key_first = first_key(key_last);
  }
  var m = NONE;
  var l = 0.0;

  let h = lid.z;  // 0 where H is 1
  let a = lid.y;
  let b = lid.x;
  var o = array<vec4<f32>, 4u * NCH>();  // o[4 j + i]: row 4a + i, elements 32 (h + H j) + 4b ..
  let base = cache0 * (KV_DIM / 4u) + kv_head / 4u;
  var kr = load_k(tid, lo - lo % BK, lo, hi, base);
  for (var k0 = lo - lo % BK; k0 <= hi; k0 += BK) {
    for (var u = 0u; u < KV_LOADS; u++) {
      let i = tid + u * WG;
      for (var e = 0u; e < 4u; e++) {
        kvt[(4u * (i / BK) + e) * (BK / 4u) + (i % BK) / 4u][i % 4u] = kr[u][e];
      }
    }
    workgroupBarrier();
    let vr = load_v(tid, k0, lo, hi, base);  // in flight during q·k and the softmax
    var s = array<vec4<f32>, 4>();  // s[i]: row 4a + i
    for (var e0 = 0u; e0 < HEAD_DIM / H; e0++) {  // a constant count: the loop unrolls
      let e = h * (HEAD_DIM / H) + e0;
      let qv = qt[e * (R / 4u) + a];
      let kv = kvt[e * (BK / 4u) + b];
      for (var i = 0u; i < 4u; i++) {
        s[i] = fma(vec4<f32>(qv[i]), kv, s[i]);
      }
    }
    for (var i = 0u; i < 4u; i++) {
      st[(h * R + 4u * a + i) * SROW + b] = s[i];
    }
    workgroupBarrier();

    // Softmax: row sr's new max over its keys in the tile, then the weights, rescale and sum of half sq's
    // keys in key order; then the tile's V rows (loaded since q·k) go to workgroup memory, where the K rows
    // are no longer read.
    if (tid < 2u * R) {
      var m_new = m;
      for (var k4 = 0u; k4 < BK / 4u; k4++) {
        let v = tile_scores(sr, k4);
        for (var e = 0u; e < 4u; e++) {
          let key = k0 + 4u * k4 + e;
          if (key >= key_first && key <= key_last) {
            m_new = max(m_new, v[e]);
          }
        }
      }
      var sum = 0.0;
      for (var k4 = sq * (BK / 8u); k4 < (sq + 1u) * (BK / 8u); k4++) {
        let v = tile_scores(sr, k4);
        for (var e = 0u; e < 4u; e++) {
          let key = k0 + 4u * k4 + e;
          var p = 0.0;
          if (key >= key_first && key <= key_last) {
            p = exp(v[e] - m_new);
          }
          sum += p;
          pt[(4u * k4 + e) * (R / 4u) + sr / 4u][sr % 4u] = p;
        }
      }
      let corr = exp(m - m_new);
      l = l * corr + sum;
      m = m_new;
      if (sq == 0u) {
        row_scale[sr] = corr;
      }
    }
    for (var u = 0u; u < KV_LOADS; u++) {
      kvt[tid + u * WG] = vr[u];
    }
    workgroupBarrier();

    if (k0 + BK <= hi) {
      kr = load_k(tid, k0 + BK, lo, hi, base);  // the next tile's, in flight during p·V
    }
    // Outputs: o = o * rescale, then + p v key by key in order.
    for (var i = 0u; i < 4u; i++) {
      let corr = row_scale[4u * a + i];
      for (var j = 0u; j < NCH; j++) {
        o[4u * j + i] *= corr;
      }
    }
    for (var k = 0u; k < BK; k++) {
      let p = pt[k * (R / 4u) + a];
      for (var j = 0u; j < NCH; j++) {
        let v = kvt[k * D4 + 8u * (h + H * j) + b];
        for (var i = 0u; i < 4u; i++) {
          o[4u * j + i] = fma(vec4<f32>(p[i]), v, o[4u * j + i]);
        }
      }
    }
    workgroupBarrier();
  }

  if (tid < 2u * R) {
    row_scale[tid] = l;
  }
  workgroupBarrier();
  for (var i = 0u; i < 4u; i++) {
    let r = row0 + 4u * a + i;
    if (r < rows) {
      let at = ((r / G) * N_HEADS + kvh * G + r % G) * D4 + b;
      for (var j = 0u; j < NCH; j++) {
        out[at + 8u * (h + H * j)] = o[4u * j + i] / (row_scale[4u * a + i] + row_scale[R + 4u * a + i]);
      }
    }
  }
}
