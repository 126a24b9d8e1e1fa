// The GPU side of quant/gpu_layout.cpp's repack(): GGUF blocks, written unchanged into `src`, become the
// planar layout that matvec.wgsl reads, byte for byte what the CPU builds. One template over the quantized
// types: WTYPE_* picks the code function (each element's unsigned quant, as gpu_layout.cpp's codes_*), and
// the plane structure is quant::PlaneLayout's, as defines:
//   BLOCK_BYTES, CPB (32-element chunks per block), BYTES or NIBBLES, PAIRS (with PAIR_SHIFT),
//   BITS (with BIT_SHIFT), S0_OFFSET and S0_BYTES, S1_OFFSET and S1_BYTES (0: no second scale field).
// `src` holds blocks first_block .. first_block + n_blocks - 1 of one matrix chunk from byte 0, so blocks
// sit at unaligned offsets (a Q4_0 block is 18 bytes). One invocation repacks two consecutive blocks:
// first_block is even, so every word it writes (2-byte scale fields pack two blocks per word) is its own.

struct Params {
  first_block: u32,
  n_blocks: u32,
  pairs_at: u32,    // word offsets of the pair and bit planes in q
  bits_at: u32,
  scales1_at: u32,  // byte offset of the second scale plane in `scales`
  pad0: u32,
  pad1: u32,
  pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> q: array<u32>;
@group(0) @binding(3) var<storage, read_write> scales: array<u32>;

const WG = 64u;
const L1 = 0x01010101u;
const L2 = 0x03030303u;
const L4 = 0x0F0F0F0Fu;

// The little-endian u32 at byte o of src.
fn load(o: u32) -> u32 {
  let i = o / 4u;
  let s = 8u * (o % 4u);
  if (s == 0u) {
    return src[i];
  }
  return (src[i] >> s) | (src[i + 1u] << (32u - s));
}

// Legacy blocks: byte k of the nibbles holds element k (low) and k + 16 (high); Q5's fifth bits are bit e
// of a u32. Code word i holds the codes of elements 4i..4i+3, one per byte.
fn nibbles(qs: u32, i: u32) -> u32 {
  return (load(qs + 4u * (i % 4u)) >> (4u * (i / 4u))) & L4;
}
fn spread_bits(v: u32, i: u32) -> u32 {
  return (((v >> (4u * i)) & 0xFu) * 0x00204081u) & L1;
}
// K-quants (i = word of the 256-element super-block): q2_K/q3_K 2-bit fields, q4_K/q5_K nibbles, q3_K's
// hmask and q5_K's qh.
fn crumbs(qs: u32, i: u32) -> u32 {
  return (load(qs + 32u * (i / 32u) + 4u * (i % 8u)) >> (2u * ((i % 32u) / 8u))) & L2;
}
fn k_nibbles(qs: u32, i: u32) -> u32 {
  return (load(qs + 32u * (i / 16u) + 4u * (i % 8u)) >> (4u * ((i % 16u) / 8u))) & L4;
}
fn high_bits(bits: u32, i: u32) -> u32 {
  return (load(bits + 4u * (i % 8u)) >> (i / 8u)) & L1;
}

#if WTYPE_Q8_0
fn code(b: u32, i: u32) -> u32 {
  return load(b + 2u + 4u * i) ^ 0x80808080u;  // int8 q -> q + 128
}
#endif
#if WTYPE_Q4_0
fn code(b: u32, i: u32) -> u32 {
  return nibbles(b + 2u, i);
}
#endif
#if WTYPE_Q4_1
fn code(b: u32, i: u32) -> u32 {
  return nibbles(b + 4u, i);
}
#endif
#if WTYPE_Q5_0
fn code(b: u32, i: u32) -> u32 {
  return nibbles(b + 6u, i) | (spread_bits(load(b + 2u), i) << 4u);
}
#endif
#if WTYPE_Q5_1
fn code(b: u32, i: u32) -> u32 {
  return nibbles(b + 8u, i) | (spread_bits(load(b + 4u), i) << 4u);
}
#endif
#if WTYPE_Q2_K
fn code(b: u32, i: u32) -> u32 {
  return crumbs(b + 16u, i);
}
#endif
#if WTYPE_Q3_K
fn code(b: u32, i: u32) -> u32 {
  return crumbs(b + 32u, i) | (high_bits(b, i) << 2u);
}
#endif
#if WTYPE_Q4_K
fn code(b: u32, i: u32) -> u32 {
  return k_nibbles(b + 16u, i);
}
#endif
#if WTYPE_Q5_K
fn code(b: u32, i: u32) -> u32 {
  return k_nibbles(b + 48u, i) | (high_bits(b + 16u, i) << 4u);
}
#endif
#if WTYPE_Q6_K
// Low 4 bits from byte 64 half + 32 (k & 1) + e % 32 (the high nibble when k >= 2), top 2 bits from byte
// 128 + 32 half + e % 32 at bit 2k, where half = e / 128 and k = (e % 128) / 32.
fn code(b: u32, i: u32) -> u32 {
  let half = i / 32u;
  let k = (i % 32u) / 8u;
  let m = i % 8u;
  let low = (load(b + 64u * half + 32u * (k & 1u) + 4u * m) >> (4u * (k / 2u))) & L4;
  let high = (load(b + 128u + 32u * half + 4u * m) >> (2u * k)) & L2;
  return low | (high << 4u);
}
#endif

// The code planes of block `local` of src (gpu_layout.cpp's fill_blocks).
fn repack_codes(local: u32) {
  let base = local * BLOCK_BYTES;
  let b = p.first_block + local;
  for (var i = 0u; i < CPB; i++) {
    let g = b * CPB + i;
    var c: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
      c[j] = code(base, 8u * i + j);
    }
#if BYTES
    for (var j = 0u; j < 8u; j++) {
      q[8u * g + j] = c[j];
    }
#endif
#if NIBBLES
    for (var j = 0u; j < 4u; j++) {
      q[4u * g + j] = (c[j] & L4) | ((c[j + 4u] & L4) << 4u);
    }
#endif
#if PAIRS
    for (var h = 0u; h < 2u; h++) {
      var v = 0u;
      for (var j = 0u; j < 4u; j++) {
        v |= ((c[4u * h + j] >> PAIR_SHIFT) & L2) << (2u * j);
      }
      q[p.pairs_at + 2u * g + h] = v;
    }
#endif
#if BITS
    var v = 0u;
    for (var j = 0u; j < 8u; j++) {
      v |= ((c[j] >> BIT_SHIFT) & L1) << j;
    }
    q[p.bits_at + g] = v;
#endif
  }
}

// The scale field (offset, bytes) of `count` blocks from src block `local` into the scale plane starting at
// byte `plane`: only the words that hold these blocks' bytes, so a missing second block writes nothing of
// the next plane.
fn copy_field(local: u32, count: u32, offset: u32, bytes: u32, plane: u32) {
  let at = (plane + (p.first_block + local) * bytes) / 4u;
  let n = count * bytes;
  for (var w = 0u; 4u * w < n; w++) {
    var v = 0u;
    for (var k = 0u; k < 4u; k++) {
      let j = 4u * w + k;
      if (j < n) {
        v |= (load((local + j / bytes) * BLOCK_BYTES + offset + j % bytes) & 0xFFu) << (8u * k);
      }
    }
    scales[at + w] = v;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let local = 2u * ((wg.y * groups.x + wg.x) * WG + lid);
  if (local >= p.n_blocks) {
    return;
  }
  let count = min(2u, p.n_blocks - local);
  for (var k = 0u; k < count; k++) {
    repack_codes(local + k);
  }
  copy_field(local, count, S0_OFFSET, S0_BYTES, 0u);
  if (S1_BYTES > 0u) {
    copy_field(local, count, S1_OFFSET, S1_BYTES, p.scales1_at);
  }
}
