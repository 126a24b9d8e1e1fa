// out[r] = x[r] / sqrt(mean(x[r]^2) + EPS) * weight over N elements, one workgroup per row r (workgroup x):
// row r of the pass's tokens, or with GATHER the token of logits row r (rows[r].token), so that only the
// rows whose logits are wanted go on to the LM head. x [tokens, N], out [rows, N].
// The arithmetic is matvec.wgsl's NORM, operation for operation (four elements per term of the sum of
// squares, the same reduction: row_sum.wgsl, the same products): a projection gets the same normalised
// input whether the norm is fused into it (one token) or runs here (a batch), which keeps a sequence's
// logits independent of the batch it is in.
#if SUBGROUPS
enable subgroups;
#endif
#if GATHER
#use step_params
#endif
#use row_sum
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
#if GATHER
@group(0) @binding(3) var<storage, read> rows: array<Row>;
#endif

const WG = 256u;
const N4 = (N + 3u) / 4u;
var<workgroup> partial: array<f32, WG>;

// Elements 4i..4i+3 of a row, zero past N.
fn quad(base: u32, i: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) {
    if (4u * i + e < N) {
      v[e] = x[base + 4u * i + e];
    }
  }
  return v;
}

fn weight_quad(i: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) {
    if (4u * i + e < N) {
      v[e] = weight[4u * i + e];
    }
  }
  return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>
#if SUBGROUPS
        , @builtin(subgroup_invocation_id) sg_lane: u32
#endif
) {
#if !SUBGROUPS
  let sg_lane = 0u;
#endif
#if GATHER
  let src = rows[wid.x].token * N;
#else
  let src = wid.x * N;
#endif
  var ss = 0.0;
  for (var i = tid; i < N4; i += WG) {
    let v = quad(src, i);
    ss += dot(v, v);
  }
  let inv_rms = inverseSqrt(workgroup_sum(ss, tid, sg_lane) / f32(N) + EPS);
  let dst = wid.x * N;
  for (var i = tid; i < N4; i += WG) {
    let v = quad(src, i) * inv_rms * weight_quad(i);
    for (var e = 0u; e < 4u; e++) {
      if (4u * i + e < N) {
        out[dst + 4u * i + e] = v[e];
      }
    }
  }
}
