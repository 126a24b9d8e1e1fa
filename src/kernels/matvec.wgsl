// Everything that reads a weight matrix W [ROWS x COLS] (GGUF's ne = [COLS, ROWS]) as repacked at load:
//   default:  y[j * Y_STRIDE + Y_OFFSET + r] (+)= sum_c W[r, c] * x[j * X_STRIDE + c] for the BATCH columns
//             j (tokens) of this workgroup's tile (GEMV, or a thin GEMM; ACCUMULATE adds into y: the residual)
//   EMBED:    y[i * COLS + c] = W[id - Y_OFFSET, c] for token i of the pass when this chunk holds row `id`
//             (embedding row gather; the id is the token's, or the sampler's last for its slot)
// Weight storage by WTYPE (one template, not one kernel per type):
//   WTYPE_F32  w: f32 bits
//   WTYPE_F16, WTYPE_BF16 (with HALVES)  w: two 16-bit floats per u32 (element i = half i%2 of word i/2)
//   QUANT: WTYPE_Q8_0, _Q4_0, _Q4_1, _Q5_0, _Q5_1, _Q2_K, _Q3_K, _Q4_K, _Q5_K, _Q6_K as quant/gpu_layout.hpp
//     repacks them: `w` holds the 32-element chunks' code bits, `scales` the blocks' other fields.
//   Decoding (chunk_codes, chunk_scales, weight_at) is weight_decode.wgsl's, shared with matmul.wgsl.
// GEMV: TPR threads share a row, RPW rows per workgroup; the lanes of a row take consecutive chunks, so a
// row's 32 lanes read 32 consecutive 16-byte code vectors (plus their smaller high-bit words) at once.
// Each chunk is decoded once and dotted with the BATCH activation columns of the tile (workgroup x), so a
// workgroup reads its weights once per BATCH tokens. Rows fold over workgroups y and z.
// Batch invariance: a column's arithmetic is the same for every BATCH and whatever the other columns hold
// (each column is its own sequence of operations: chunk_dot, the lane's sum in chunk order, the same
// reduction), so a token's output does not depend on the batch it runs in. Columns past the pass's tokens
// compute on whatever their x rows hold and write y rows that no one reads; buffers hold whole tiles.
// Partial sums reduce through subgroups when the adapter has them (SUBGROUPS) and through workgroup memory
// otherwise.
// Quantized types stage the inputs in workgroup memory, TPR chunks of every column at a time (a tile), so
// that global memory is read coalesced once per workgroup and a row's lanes read their chunks' inputs from
// workgroup memory without bank conflicts; STAGE_ROWS rows per lane group share each read when BATCH is 1.
// INT8 (quantized types): the inputs are quantized to int8 per 32-element chunk as they are staged, by the
// prefill GEMM's arithmetic (act_quant.wgsl), LANE_CHUNKS chunks per lane and tile, and each chunk's dot
// product is exact integer arithmetic (dot4I8Packed) scaled once (weight_decode.wgsl's int8_chunk_dot): a
// quarter of the float path's instructions per weight, and batch-invariant by construction.
// PREQUANT (INT8): the inputs come quantized, [tokens, CHUNKS] chunks of quantize_act.wgsl (xq: two code
// vectors per chunk, xs: its scales), so that a pass of several tokens quantizes each input once rather
// than once per workgroup (runtime/forward.hpp, add_gemv_group).
// EXPERTS (a mixture-of-experts layer's expert GEMV, BATCH 1): the chunk holds whole experts of EXPERT_ROWS
// rows, from expert FIRST_EXPERT on; workgroup x is slot x % EXPERTS of token x / EXPERTS, and computes
// the rows of the expert that route[x] (moe_route.wgsl) chose, if this chunk holds it, as ROWS = EXPERT_ROWS
// would, into column x of y. The input is column x, or with TOKEN_INPUT the token's (every slot reads it).
// With NORM (BATCH 1) the inputs are RMS-normalised on the way in (x / rms(x) * norm_w, EPS inside the
// root): the RMSNorm that precedes a projection costs no dispatch of its own. rms_norm.wgsl does the same
// arithmetic for batches. kernels/matvec.hpp says how many columns a workgroup's memory holds.
// ROPE_KV (QUANT, with NORM or PREQUANT; a q|k|v projection whose rows Y_OFFSET + r are the token's
// q | k | v as rope_kv.wgsl reads them): the epilogue does rope_kv's work for the plain llama rotation:
// the workgroup's row sums meet in workgroup memory, each adjacent pair (2j, 2j + 1) of a head's first
// ROPE_DIM dimensions is rotated by rope_rotate at the token's position, q rows go to y, k and v rows to
// the KV caches' row of the token's (slot, pos) (not to y); columns past the pass's tokens write nothing.
// A decode step so saves rope_kv's dispatch and barrier per layer; the bits are rope_kv's.
// GLU (QUANT, NORM, BATCH 1; a stacked gate|up projection, gate rows 0..ROWS/2 and up rows ROWS/2..ROWS):
// workgroup w computes gate rows w * PAIRS .. (w + 1) * PAIRS and the same up rows (its first lane groups
// the gate's, the others the up's), and its epilogue leaves silu(gate) * up for them as int8 chunks in hq,
// hs (quantize_act's layout, [tokens, ROWS / 64] chunks: what the down GEMV's PREQUANT reads), by
// silu_mul.wgsl's silu_times and act_quant.wgsl's quantize_chunk, the codes silu_mul's QUANT_OUT makes
// (y gets the gate and up values as without GLU). PAIRS is a multiple of 32 and divides ROWS / 2 (the
// runtime checks). A decode step so saves silu_mul's dispatch per layer.
#if SUBGROUPS
enable subgroups;
#endif

#if QUANT
@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<vec4<u32>>;
#if EMBED
@group(0) @binding(2) var<storage, read> tokens: array<Token>;
@group(0) @binding(4) var<storage, read> sampled: array<u32>;
#else
#if PREQUANT
@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> xs: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> x_in: array<vec4<f32>>;
#endif
#if NORM
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;
#endif
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#else
@group(0) @binding(0) var<storage, read> w: array<u32>;
#if EMBED
@group(0) @binding(1) var<storage, read> tokens: array<Token>;
@group(0) @binding(3) var<storage, read> sampled: array<u32>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
#endif
#if EMBED
#use step_params
#endif
#if GLU
#use silu
#use act_quant
@group(0) @binding(5) var<storage, read_write> hq: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read_write> hs: array<vec4<f32>>;
#endif
#if ROPE_KV
#use step_params
#use rope_rotate
struct Batch {
  tokens: u32,
}
@group(0) @binding(5) var<storage, read> tokens: array<Token>;
@group(0) @binding(6) var<storage, read> rope: array<vec2<f32>>;  // [CTX, ROPE_DIM / 2] (cos, sin)
@group(0) @binding(7) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(8) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(9) var<uniform> batch: Batch;
const KV_DIM = N_KV * HEAD_DIM;
const K_OFF = N_HEADS * HEAD_DIM;
const V_OFF = K_OFF + KV_DIM;
#endif
#if EXPERTS
#use route
#if QUANT
@group(0) @binding(4) var<storage, read> route: array<Route>;
#else
@group(0) @binding(3) var<storage, read> route: array<Route>;
#endif
var<workgroup> chosen: u32;
// The chosen expert's rows in this chunk: [row_base, row_end).
var<private> row_base: u32;
var<private> row_end: u32;
#else
const row_base = 0u;
const row_end = ROWS;
#endif

// Invocations per workgroup: 256, or WG_SIZE (512, 1024: one-column GEMVs of tall matrices, whose
// workgroups then stage the input once for more rows; kernels/matvec.hpp).
#if WG_SIZE
const WG = WG_SIZE;
#else
const WG = 256u;
#endif
const TPR = 32u;  // threads per row
const ACT_WG = WG;  // act_quant.wgsl's quantize_part
#if STAGE_PARTS
const ACT_VECS = 8u / STAGE_PARTS;  // quantize_part's: a chunk's vectors per invocation in the staging
#else
const ACT_VECS = 1u;
#endif
#if QUANT
#if EMBED
const RPL = 1u;
#else
const RPL = STAGE_ROWS;  // rows per lane group
#if INT8
#use act_quant
// The tile: LANE_CHUNKS chunks per lane, quantized by act_quant.wgsl's quantize_chunk as they are staged.
// Chunk i of column j: its codes at xq_t[2j * TILE + i] (elements 0-15) and xq_t[(2j + 1) * TILE + i],
// its act scales at xs_t[j * TILE + i]; a row's lanes read consecutive 16-byte slots.
const TILE = TPR * LANE_CHUNKS;
var<workgroup> xq_t: array<vec4<u32>, BATCH * 2u * TILE>;
var<workgroup> xs_t: array<vec4<f32>, BATCH * TILE>;
#else
// The tile: vector v (of 8) of chunk i (of TPR) of column j at xt[(j * 8 + v) * TILE_STRIDE + i]. A row's
// lanes read one vector of consecutive chunks, 16 bytes apart: no bank conflicts (chunk-major, 128 bytes
// apart, all 32 lanes hit the same four banks, which held the GEMV to ~0.4 TB/s on the H200,
// docs/perf.md). The padding slot keeps the staging writes, which walk v fastest, conflict-free too.
const TILE_STRIDE = TPR + 1u;
var<workgroup> xt: array<vec4<f32>, BATCH * 8u * TILE_STRIDE>;
#endif
#endif
#else
const RPL = 1u;
#endif
const RPW = WG / TPR * RPL;  // rows per workgroup

#use weight_decode
#if NORM
#use row_sum
#endif

#if EMBED
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let c = wid.y * WG + tid;
  let t = tokens[wid.x];
  let id = select(t.id, sampled[t.slot], (t.flags & FROM_SAMPLER) != 0u);
  if (c < COLS && id >= Y_OFFSET && id - Y_OFFSET < ROWS) {
    y[wid.x * COLS + c] = weight_at(id - Y_OFFSET, c);
  }
}
#else

#if QUANT
#if INT8
// Quantizes chunks t .. t + TILE of the tile's columns into xq_t, xs_t (zeros past the row's end): one
// invocation per chunk, which reads the chunk's 32 inputs as 8 consecutive vectors; with PREQUANT copies
// the chunk's codes and scales that quantize_act.wgsl made (the same quantize_chunk of the same values).
// With STAGE_PARTS (one column, 2, 4 or 8 invocations per chunk of the tile, as many as the workgroup
// has: kernels::matvec_stage_parts) each chunk is split over STAGE_PARTS invocations (quantize_part: the
// same codes and scales), so a decode step's GEMVs wait for a part's worth of quantization instead of a
// chunk's, with every invocation busy.
#if STAGE_PARTS
fn stage_tile(t: u32, tid: u32, col0: u32, inv_rms: f32) {
  const_assert BATCH == 1u && WG >= STAGE_PARTS * TILE;
  // This invocation's inputs: vectors 8t + tid * ACT_VECS .. of the column (of the tile's chunk
  // tid / STAGE_PARTS), zeros past the row's end and the tile's.
  var v: array<vec4<f32>, ACT_VECS>;
  for (var m = 0u; m < ACT_VECS; m++) {
    let e = 8u * t + tid * ACT_VECS + m;
    if (tid < STAGE_PARTS * TILE && e < COLS / 4u) {
      v[m] = x_in[col0 * (X_STRIDE / 4u) + e];
#if NORM
      v[m] = v[m] * inv_rms * norm_w[e];
#endif
    }
  }
  let part = quantize_part(v, tid);
  let i = tid / STAGE_PARTS;  // the tile's chunk
  let k = tid % STAGE_PARTS;  // its vectors k * ACT_VECS ..
  if (i < TILE) {
    for (var m = 0u; m < ACT_VECS; m++) {
      let e = k * ACT_VECS + m;  // the chunk's word
      xq_t[(e / 4u) * TILE + i][e % 4u] = part.words[m];
    }
    if (k == 0u) {
      xs_t[i] = part.s;
    }
  }
}
#else
fn stage_tile(t: u32, tid: u32, col0: u32, inv_rms: f32) {
  for (var e = tid; e < BATCH * TILE; e += WG) {
    let j = e / TILE;
    let i = e % TILE;
    let c = t + i;
    var q = ActChunk(vec4<u32>(0u), vec4<u32>(0u), vec4<f32>(0.0));
#if PREQUANT
    if (c < CHUNKS) {
      let g = (col0 + j) * CHUNKS + c;
      q = ActChunk(xq[2u * g], xq[2u * g + 1u], xs[g]);
    }
#else
    if (c < CHUNKS) {
      var v: array<vec4<f32>, 8>;
      for (var k = 0u; k < 8u; k++) {
        v[k] = x_in[(col0 + j) * (X_STRIDE / 4u) + 8u * c + k];
#if NORM
        v[k] = v[k] * inv_rms * norm_w[8u * c + k];
#endif
      }
      q = quantize_chunk(v);
    }
#endif
    xq_t[2u * j * TILE + i] = q.lo;
    xq_t[(2u * j + 1u) * TILE + i] = q.hi;
    xs_t[j * TILE + i] = q.s;
  }
}
#endif
#else
// Four codes (one per byte) minus `off`, as floats. A byte placed in the mantissa of 2^23 is the float
// 2^23 + code, and subtracting 2^23 + off leaves code - off exactly: full-rate bit and add operations
// instead of int-to-float conversions, which NVIDIA GPUs run at a fraction of the FMA rate (docs/perf.md).
fn byte_values(v: u32, off: f32) -> vec4<f32> {
  let b = (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFFu);
  return bitcast<vec4<f32>>(b | vec4<u32>(0x4B000000u)) - vec4<f32>(8388608.0 + off);
}

// A chunk's 32 weights as chunk_dot uses them: dequantized (a * code - m, one fma: see dot_add) for types
// with mins, else code - OFFSET with the scales applied to the two half sums. Types
// with mins dequantize each weight rather than subtract m * sum(x): when a * code and m nearly cancel, the
// split sums would lose digits the weights keep.
struct Chunk {
  v: array<vec4<f32>, 8>,  // elements 4j..4j+3 in v[j]
  s: vec2<f32>,            // the halves' scales, or 1 where v is dequantized
}

fn decode_chunk(g: u32) -> Chunk {
  let c = chunk_codes(g);
  let s = chunk_scales(g);
  var k: Chunk;
  if (MINS) {
    for (var j = 0u; j < 4u; j++) {
      k.v[j] = fma(byte_values(c.lo[j], 0.0), vec4<f32>(s.x), vec4<f32>(-s.z));
      k.v[4u + j] = fma(byte_values(c.hi[j], 0.0), vec4<f32>(s.y), vec4<f32>(-s.w));
    }
    k.s = vec2<f32>(1.0);
    return k;
  }
  let off = f32(OFFSET);
  for (var j = 0u; j < 4u; j++) {
    k.v[j] = byte_values(c.lo[j], off);
    k.v[4u + j] = byte_values(c.hi[j], off);
  }
  k.s = s.xy;
  return k;
}

// The staged inputs of column j for this lane's chunk of the tile, held in registers so that several rows
// can use them.
fn tile_x(j: u32, lane: u32) -> array<vec4<f32>, 8> {
  var v: array<vec4<f32>, 8>;
  for (var k = 0u; k < 8u; k++) {
    v[k] = xt[(j * 8u + k) * TILE_STRIDE + lane];
  }
  return v;
}

// Stages the inputs of chunks t .. t + TPR of the tile's columns (zeros past the row's end); consecutive
// invocations read consecutive vectors of a column.
fn stage_tile(t: u32, tid: u32, col0: u32, inv_rms: f32) {
  for (var e = tid; e < BATCH * 8u * TPR; e += WG) {
    let j = e / (8u * TPR);
    let k = e % (8u * TPR);
    let c = t + k / 8u;
    var v = vec4<f32>(0.0);
    if (c < CHUNKS) {
      let i = 8u * c + k % 8u;
      v = x_in[(col0 + j) * (X_STRIDE / 4u) + i];
#if NORM
      v = v * inv_rms * norm_w[i];
#endif
    }
    xt[(j * 8u + k % 8u) * TILE_STRIDE + k / 8u] = v;
  }
}

// Four products added to `acc`, each multiply-add an explicit fma: the driver's compiler is free to fuse
// a separate multiply and add, and may do so differently in the one-column and the several-column code of
// tiled_dots, which on an H200 made a token's Q4_0 logits depend on its batch (in the 6th digit). With
// nothing left to fuse, every (row, column) gets the same operations.
fn dot_add(acc: f32, a: vec4<f32>, b: vec4<f32>) -> f32 {
  return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, acc))));
}

// `acc` plus the chunk's share of a row's dot product with its 32 inputs.
fn chunk_dot(acc: f32, k: Chunk, xv: array<vec4<f32>, 8>) -> f32 {
  var q = vec2<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    q.x = dot_add(q.x, k.v[j], xv[j]);
    q.y = dot_add(q.y, k.v[4u + j], xv[4u + j]);
  }
  if (MINS) {
    return acc + (q.x + q.y);
  }
  return fma(k.s.y, q.y, fma(k.s.x, q.x, acc));
}
#endif
#endif

#if !QUANT
// Where column j of the tile starting at column `col0` starts in x.
fn x_base(col0: u32, j: u32) -> u32 {
  return (col0 + j) * X_STRIDE;
}

// This lane's partial dot products of row r with the tile's BATCH columns.
fn row_dots(r: u32, lane: u32, col0: u32) -> array<f32, BATCH> {
  var acc: array<f32, BATCH>;
#if WTYPE_F32
  for (var c = lane; c < COLS; c += TPR) {
    let v = bitcast<f32>(w[r * COLS + c]);
    for (var j = 0u; j < BATCH; j++) {
      acc[j] += v * x[x_base(col0, j) + c];
    }
  }
#endif
#if HALVES
  if (COLS % 2u == 0u) {
    // A lane takes both halves of a word: a row's lanes read 128 contiguous bytes at once.
    let row = r * (COLS / 2u);
    for (var i = lane; i < COLS / 2u; i += TPR) {
      let pair = halves(w[row + i]);
      for (var j = 0u; j < BATCH; j++) {
        let xb = x_base(col0, j);
        acc[j] += pair.x * x[xb + 2u * i] + pair.y * x[xb + 2u * i + 1u];
      }
    }
  } else {
    for (var c = lane; c < COLS; c += TPR) {
      let v = weight_at(r, c);
      for (var j = 0u; j < BATCH; j++) {
        acc[j] += v * x[x_base(col0, j) + c];
      }
    }
  }
#endif
  return acc;
}
#endif

#if QUANT
#if INT8
// This lane's partial dot products of rows r0 .. r0 + RPL with the tile's columns (row i, column j at
// i * BATCH + j): LANE_CHUNKS chunks per staged tile, the lane's chunks in increasing order whatever the
// tile, rows and width, so that every (row, column) gets the same int8_chunk_dot steps in the same order
// (the integer sums are exact): its bits depend on neither BATCH nor RPL.
fn tiled_dots(r0: u32, lane: u32, tid: u32, col0: u32, inv_rms: f32) -> array<f32, RPL * BATCH> {
  var acc: array<f32, RPL * BATCH>;
  for (var t = 0u; t < CHUNKS; t += TILE) {
    workgroupBarrier();  // the previous tile is no longer read
    stage_tile(t, tid, col0, inv_rms);
    workgroupBarrier();
    for (var u = 0u; u < LANE_CHUNKS; u++) {
      let i = u * TPR + lane;
      let c = t + i;
      if (c < CHUNKS) {
        // Every row's chunk first (all their loads in flight at once), then each column's inputs once.
        var wlo: array<vec4<u32>, RPL>;
        var whi: array<vec4<u32>, RPL>;
        var ws: array<vec4<f32>, RPL>;
        for (var k = 0u; k < RPL; k++) {
          let g = min(r0 + k, row_end - 1u) * CHUNKS + c;
          let codes = chunk_codes(g);
          wlo[k] = signed_codes(codes.lo);
          whi[k] = signed_codes(codes.hi);
          ws[k] = chunk_scales(g);
        }
        for (var j = 0u; j < BATCH; j++) {
          let xlo = xq_t[2u * j * TILE + i];
          let xhi = xq_t[(2u * j + 1u) * TILE + i];
          let xs = xs_t[j * TILE + i];
          for (var k = 0u; k < RPL; k++) {
            acc[k * BATCH + j] = int8_chunk_dot(acc[k * BATCH + j], xlo, xhi, xs, wlo[k], whi[k], ws[k]);
          }
        }
      }
    }
  }
  return acc;
}
#else
// This lane's partial dot products of rows r0 .. r0 + RPL with the tile's columns (row i, column j at
// i * BATCH + j), one staged tile after another. Every (row, column) sums the same chunks in the same order
// with the same chunk_dot whatever BATCH and RPL are, so the output bits depend on neither. One column: its
// inputs are read once for all RPL rows; several: each row's chunk is decoded once for all columns.
// (Decoding all RPL rows' chunks first, then each column's inputs once for all of them, gave other bits
// than one column on lavapipe, whose compiler fused differently there.)
fn tiled_dots(r0: u32, lane: u32, tid: u32, col0: u32, inv_rms: f32) -> array<f32, RPL * BATCH> {
  var acc: array<f32, RPL * BATCH>;
  for (var t = 0u; t < CHUNKS; t += TPR) {
    workgroupBarrier();  // the previous tile is no longer read
    stage_tile(t, tid, col0, inv_rms);
    workgroupBarrier();
    let c = t + lane;
    if (c < CHUNKS) {
      if (BATCH == 1u) {
        let xv = tile_x(0u, lane);
        for (var i = 0u; i < RPL; i++) {
          if (r0 + i < row_end) {
            acc[i] = chunk_dot(acc[i], decode_chunk((r0 + i) * CHUNKS + c), xv);
          }
        }
      } else {
        for (var i = 0u; i < RPL; i++) {
          if (r0 + i < row_end) {
            let k = decode_chunk((r0 + i) * CHUNKS + c);
            for (var j = 0u; j < BATCH; j++) {
              acc[i * BATCH + j] = chunk_dot(acc[i * BATCH + j], k, tile_x(j, lane));
            }
          }
        }
      }
    }
  }
  return acc;
}
#endif
#endif

// Columns reduced together through workgroup memory (fewer barriers than one column at a time; each
// column's additions are the same tree whatever GROUPS is).
const GROUPS = min(BATCH, 8u);
var<workgroup> partial: array<f32, WG * GROUPS>;

// ROPE_KV's and GLU's epilogues: the workgroup's row sums, its row i and column j at i * BATCH + j.
#if ROPE_KV
var<workgroup> pending: array<f32, RPW * BATCH>;
fn pending_row(r: u32) -> u32 {
  return (r - row_base) % RPW;
}
#endif
#if GLU
const N_FFN = ROWS / 2u;  // gate rows 0..N_FFN, up rows N_FFN..ROWS
const PAIRS = RPW / 2u;   // (gate, up) row pairs per workgroup
var<private> pair0: u32;  // the workgroup's first gate row
var<workgroup> pending: array<f32, RPW * BATCH>;
fn pending_row(r: u32) -> u32 {
  return select(r - pair0, r - N_FFN - pair0 + PAIRS, r >= N_FFN);
}
#endif

fn store(col: u32, r: u32, v: f32) {
#if ROPE_KV
  pending[pending_row(r) * BATCH + col % BATCH] = v;
#else
#if GLU
  pending[pending_row(r) * BATCH + col % BATCH] = v;
#endif
  let i = col * Y_STRIDE + Y_OFFSET + r - row_base;
#if ACCUMULATE
  y[i] += v;
#else
  y[i] = v;
#endif
#endif
}

#if GLU
// GLU's epilogue: silu(gate) * up of the workgroup's PAIRS rows (an invocation each, into pending's gate
// half), then quantized a chunk per invocation into token col0's chunks of hq, hs. Every invocation calls
// it (barriers).
fn glu_out(col0: u32, tid: u32) {
  workgroupBarrier();
  for (var i = tid; i < PAIRS; i += WG) {
    pending[i] = silu_times(pending[i], pending[PAIRS + i]);
  }
  workgroupBarrier();
  for (var c = tid; c < PAIRS / 32u; c += WG) {
    var v: array<vec4<f32>, 8>;
    for (var k = 0u; k < 8u; k++) {
      v[k] = vec4<f32>(pending[32u * c + 4u * k], pending[32u * c + 4u * k + 1u], pending[32u * c + 4u * k + 2u],
                       pending[32u * c + 4u * k + 3u]);
    }
    let q = quantize_chunk(v);
    let o = col0 * (N_FFN / 32u) + pair0 / 32u + c;
    hq[2u * o] = q.lo;
    hq[2u * o + 1u] = q.hi;
    hs[o] = q.s;
  }
}
#endif

#if ROPE_KV
// ROPE_KV's epilogue over the workgroup's rows first .. first + RPW (first even, and Y_OFFSET even: row
// i's partner in its pair is row i ^ 1 of the same workgroup). Every invocation calls it (a barrier).
fn rope_kv_out(first: u32, col0: u32, tid: u32) {
  workgroupBarrier();
  for (var e = tid; e < RPW * BATCH; e += WG) {
    let i = e / BATCH;
    let j = e % BATCH;
    let r = first + i;
    if (r >= row_end || col0 + j >= batch.tokens) {
      continue;
    }
    let q = Y_OFFSET + r;  // the row within the token's q | k | v
    let t = tokens[col0 + j];
    let cache_row = (t.slot * CTX + t.pos) * KV_DIM;
    let value = pending[e];
    if (q >= V_OFF) {
      v_cache[cache_row + q - V_OFF] = value;
      continue;
    }
    let d = q % HEAD_DIM;  // the dimension within its head
    var out = value;
    if (d < ROPE_DIM) {
      let other = pending[(i ^ 1u) * BATCH + j];
      let even = d % 2u == 0u;
      let turned = rope_rotate(select(vec2<f32>(other, value), vec2<f32>(value, other), even),
                               rope[t.pos * (ROPE_DIM / 2u) + d / 2u]);
      out = select(turned.y, turned.x, even);
    }
    if (q < K_OFF) {
      y[(col0 + j) * Y_STRIDE + q] = out;
    } else {
      k_cache[cache_row + q - K_OFF] = out;
    }
  }
}
#endif

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>
#if SUBGROUPS
        , @builtin(subgroup_size) sg_size: u32, @builtin(subgroup_invocation_id) sg_lane: u32
#endif
) {
#if SUBGROUPS
  let sg = sg_size;
#else
  let sg = 0u;
  let sg_lane = 0u;
#endif
  let lane = tid % TPR;
#if EXPERTS
  if (tid == 0u) {
    chosen = route[wid.x].expert;
  }
  let e = workgroupUniformLoad(&chosen);
  if (e < FIRST_EXPERT || e >= FIRST_EXPERT + ROWS / EXPERT_ROWS) {
    return;  // another chunk's expert
  }
  row_base = (e - FIRST_EXPERT) * EXPERT_ROWS;
  row_end = row_base + EXPERT_ROWS;
#endif
  let first_row = row_base + (wid.y + wid.z * nwg.y) * RPW;  // this workgroup's
#if GLU
  pair0 = (wid.y + wid.z * nwg.y) * PAIRS;
  let local = (tid / TPR) * RPL;  // the lane group's first row in the workgroup: gate rows, then up rows
  let r0 = select(pair0 + local, N_FFN + pair0 + local - PAIRS, local >= PAIRS);
#else
  let r0 = first_row + (tid / TPR) * RPL;  // this lane group's first row
#endif
  let col0 = wid.x * BATCH;
#if TOKEN_INPUT
  let x_col0 = wid.x / EXPERTS;
#else
  let x_col0 = col0;
#endif
#if QUANT
  var inv_rms = 1.0;
#if NORM
  const_assert BATCH == 1u;
  let xb = x_col0 * (X_STRIDE / 4u);
  var ss = 0.0;
  // The first 256 invocations, whatever WG is: the sum's order is rms_norm.wgsl's.
  for (var i = tid; i < COLS / 4u && tid < 256u; i += 256u) {
    let v = x_in[xb + i];
    ss += dot(v, v);
  }
  inv_rms = inverseSqrt(workgroup_sum(ss, tid, sg_lane) / f32(COLS) + EPS);
#endif
  let dots = tiled_dots(r0, lane, tid, x_col0, inv_rms);
#if SUBGROUPS
  if (sg == TPR && RPL * BATCH <= TPR) {
    // Lane l ends with the sum of value l / (TPR / NV) (row i, column j at i * BATCH + j).
    let per = TPR / NV;
    let v = lane / per;
    let total = lane_sums(dots, lane);
    if (lane % per == 0u && r0 + v / BATCH < row_end) {
      store(col0 + v % BATCH, r0 + v / BATCH, total);
    }
#if ROPE_KV
    rope_kv_out(first_row, col0, tid);
#endif
#if GLU
    glu_out(col0, tid);
#endif
    return;
  }
#endif
  for (var i = 0u; i < RPL; i++) {
    var acc: array<f32, BATCH>;
    for (var j = 0u; j < BATCH; j++) {
      acc[j] = dots[i * BATCH + j];
    }
    finish_row(acc, r0 + i, lane, tid, col0, sg);
  }
#if ROPE_KV
  rope_kv_out(first_row, col0, tid);
#endif
#if GLU
  glu_out(col0, tid);
#endif
#else
  var acc: array<f32, BATCH>;
  if (r0 < row_end) {
    acc = row_dots(r0, lane, x_col0);
  }
  finish_row(acc, r0, lane, tid, col0, sg);
#endif
}

#if QUANT
#if SUBGROUPS
const NV = RPL * BATCH;  // a lane's partial sums
const_assert TPR == 32u;  // the five steps below

// The sums over a row group's TPR (= subgroup) lanes of each lane's NV partials, as one butterfly: at each
// step (partner lane ^ o, o = 16, 8, .., 1) a lane keeps half of the values it still holds (the upper half
// where lane & o) and adds the partner's copy of them, so NV values cost NV - 1 + log2(TPR / NV) shuffles
// instead of log2(TPR) each (the reduction was ~10 % of an 8-token step on the H200, docs/perf.md). Every
// value gets the same tree whatever NV is (pairs lane, lane ^ o in the order 16, 8, .., 1; float addition
// commutes, so either partner's sum has the same bits), which keeps a column's bits independent of BATCH
// and RPL. Returns the value lane / (TPR / NV) ends on.
fn lane_sums(dots: array<f32, NV>, lane: u32) -> f32 {
  var v = dots;
  for (var s = 0u; s < 5u; s++) {
    let o = (TPR / 2u) >> s;
    let half = NV >> (s + 1u);  // values kept after this step; 0 once one is left
    if (half == 0u) {
      v[0] = v[0] + subgroupShuffleXor(v[0], o);
    } else {
      let upper = (lane & o) != 0u;
      for (var i = 0u; i < half; i++) {
        let send = select(v[i + half], v[i], upper);
        let keep = select(v[i], v[i + half], upper);
        v[i] = keep + subgroupShuffleXor(send, o);
      }
    }
  }
  return v[0];
}
#endif
#endif

// Sums a row's partials over its TPR lanes and stores them (every invocation of the workgroup calls it the
// same number of times: it holds barriers).
fn finish_row(acc: array<f32, BATCH>, r: u32, lane: u32, tid: u32, col0: u32, sg: u32) {
  let write = lane == 0u && r < row_end;
#if SUBGROUPS
  // Subgroups hold consecutive invocations; when one fits inside a row's TPR lanes, its sum is that
  // row's partial (added up over the row's subgroups in workgroup memory when smaller). A wider subgroup
  // (64 on some GPUs) takes the workgroup-memory path below.
  if (sg == TPR) {
    for (var j = 0u; j < BATCH; j++) {
      let total = subgroupAdd(acc[j]);
      if (write) {
        store(col0 + j, r, total);
      }
    }
    return;
  }
  if (sg < TPR) {
    for (var j = 0u; j < BATCH; j++) {
      partial[tid] = subgroupAdd(acc[j]);
      workgroupBarrier();
      if (write) {
        var total = 0.0;
        for (var i = 0u; i < TPR; i += sg) {
          total += partial[tid + i];
        }
        store(col0 + j, r, total);
      }
      workgroupBarrier();
    }
    return;
  }
#endif
  for (var j0 = 0u; j0 < BATCH; j0 += GROUPS) {
    for (var g = 0u; g < GROUPS; g++) {
      partial[g * WG + tid] = acc[j0 + g];
    }
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
      if (lane < s) {
        for (var g = 0u; g < GROUPS; g++) {
          partial[g * WG + tid] += partial[g * WG + tid + s];
        }
      }
      workgroupBarrier();
    }
    if (write) {
      for (var g = 0u; g < GROUPS; g++) {
        store(col0 + j0 + g, r, partial[g * WG + tid]);
      }
    }
    workgroupBarrier();
  }
}
#endif
