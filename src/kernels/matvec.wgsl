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
// STAGE_X (quantized types, BATCH 1): each workgroup first copies the input into workgroup memory, and with
// NORM RMS-normalises it on the way (x / rms(x) * norm_w, EPS inside the root): the RMSNorm that precedes a
// projection costs no dispatch of its own. rms_norm.wgsl does the same arithmetic for batches.
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
#if STAGE_X
@group(0) @binding(2) var<storage, read> x_in: array<vec4<f32>>;
// One vec4 of padding after each chunk's 8: a row's lanes read the same vec4 of 32 consecutive chunks at
// once, 144 bytes apart instead of 128, which spreads them over all the banks (at 128 they all hit the
// same four: a 32-way conflict that held every staged GEMV to ~0.4 TB/s on the H200, docs/perf.md).
const X_PAD = 9u;  // vec4 slots per chunk in workgroup memory
var<workgroup> x: array<vec4<f32>, COLS / 32u * X_PAD>;
#if NORM
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;
#endif
#else
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
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

const WG = 256u;
const TPR = 32u;         // threads per row
#if STAGE_X
const RPL = STAGE_ROWS;  // rows per lane group (they share each chunk's staged inputs)
#else
const RPL = 1u;
#endif
const RPW = WG / TPR * RPL;  // rows per workgroup

#use weight_decode

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
// Four codes (one per byte) as floats.
fn byte_values(v: u32) -> vec4<f32> {
  return vec4<f32>(unpack4xU8(v));
}

// A chunk's 32 weights as chunk_dot uses them: dequantized (a * code - m, rounded as the CPU reference
// rounds it) for types with mins, else code - OFFSET with the scales applied to the two half sums. Types
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
      k.v[j] = byte_values(c.lo[j]) * s.x - s.z;
      k.v[4u + j] = byte_values(c.hi[j]) * s.y - s.w;
    }
    k.s = vec2<f32>(1.0);
    return k;
  }
  let off = f32(OFFSET);
  for (var j = 0u; j < 4u; j++) {
    k.v[j] = byte_values(c.lo[j]) - off;
    k.v[4u + j] = byte_values(c.hi[j]) - off;
  }
  k.s = s.xy;
  return k;
}

// A chunk's 32 inputs x[xb .. xb + 8) (vec4s), held in registers so that several rows can use them.
fn load_x(xb: u32) -> array<vec4<f32>, 8> {
  var v: array<vec4<f32>, 8>;
  for (var j = 0u; j < 8u; j++) {
    v[j] = x[xb + j];
  }
  return v;
}

// The chunk's share of a row's dot product with its 32 inputs.
fn chunk_dot(k: Chunk, xv: array<vec4<f32>, 8>) -> f32 {
  var q = vec2<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    q.x += dot(k.v[j], xv[j]);
    q.y += dot(k.v[4u + j], xv[4u + j]);
  }
  if (MINS) {
    return q.x + q.y;
  }
  return dot(k.s, q);
}
#endif

// Where column j of the tile starting at column `col0` starts in x (in x's elements).
fn x_base(col0: u32, j: u32) -> u32 {
#if STAGE_X
  return 0u;
#else
#if QUANT
  return (col0 + j) * (X_STRIDE / 4u);
#else
  return (col0 + j) * X_STRIDE;
#endif
#endif
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
#if QUANT
  for (var c = lane; c < CHUNKS; c += TPR) {
    let k = decode_chunk(r * CHUNKS + c);
    for (var j = 0u; j < BATCH; j++) {
      acc[j] += chunk_dot(k, load_x(x_base(col0, j) + 8u * c));
    }
  }
#endif
  return acc;
}

#if STAGE_X
// The staged one-token GEMV: this lane's partial dot products of rows r0 .. r0 + RPL, each chunk's inputs
// read from workgroup memory once for all of them (the inputs, not the weights, were what the lanes
// waited on). A row's arithmetic is row_dots' (the same chunks in the same order, the same chunk_dot), so
// the output bits do not depend on RPL, nor on whether the batched path computed it.
fn staged_rows(r0: u32, lane: u32) -> array<f32, RPL> {
  var acc: array<f32, RPL>;
  for (var c = lane; c < CHUNKS; c += TPR) {
    let xv = load_x(X_PAD * c);
    for (var i = 0u; i < RPL; i++) {
      if (r0 + i < ROWS) {
        acc[i] += chunk_dot(decode_chunk((r0 + i) * CHUNKS + c), xv);
      }
    }
  }
  return acc;
}
#endif

// Columns reduced together through workgroup memory (fewer barriers than one column at a time; each
// column's additions are the same tree whatever GROUPS is).
const GROUPS = min(BATCH, 8u);
var<workgroup> partial: array<f32, WG * GROUPS>;

fn store(col: u32, r: u32, v: f32) {
  let i = col * Y_STRIDE + Y_OFFSET + r;
#if ACCUMULATE
  y[i] += v;
#else
  y[i] = v;
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>
#if SUBGROUPS
        , @builtin(subgroup_size) sg_size: u32
#endif
) {
#if SUBGROUPS
  let sg = sg_size;
#else
  let sg = 0u;
#endif
  let lane = tid % TPR;
  let r0 = (wid.y + wid.z * nwg.y) * RPW + (tid / TPR) * RPL;  // this lane group's first row
  let col0 = wid.x * BATCH;
#if STAGE_X
  const_assert BATCH == 1u;
#if NORM
  var ss = 0.0;
  for (var i = tid; i < COLS / 4u; i += WG) {
    let v = x_in[i];
    ss += dot(v, v);
  }
  partial[tid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      partial[tid] += partial[tid + s];
    }
    workgroupBarrier();
  }
  let inv_rms = inverseSqrt(partial[0] / f32(COLS) + EPS);
  workgroupBarrier();
  for (var i = tid; i < COLS / 4u; i += WG) {
    x[i / 8u * X_PAD + i % 8u] = x_in[i] * inv_rms * norm_w[i];
  }
#else
  for (var i = tid; i < COLS / 4u; i += WG) {
    x[i / 8u * X_PAD + i % 8u] = x_in[i];
  }
#endif
  workgroupBarrier();
#endif
#if STAGE_X
  let dots = staged_rows(r0, lane);
  for (var i = 0u; i < RPL; i++) {
    var acc: array<f32, BATCH>;
    acc[0] = dots[i];
    finish_row(acc, r0 + i, lane, tid, col0, sg);
  }
#else
  var acc: array<f32, BATCH>;
  if (r0 < ROWS) {
    acc = row_dots(r0, lane, col0);
  }
  finish_row(acc, r0, lane, tid, col0, sg);
#endif
}

// Sums a row's partials over its TPR lanes and stores them (every invocation of the workgroup calls it the
// same number of times: it holds barriers).
fn finish_row(acc: array<f32, BATCH>, r: u32, lane: u32, tid: u32, col0: u32, sg: u32) {
  let write = lane == 0u && r < ROWS;
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
