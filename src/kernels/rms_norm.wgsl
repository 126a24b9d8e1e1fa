// out[i] = x[i] / sqrt(mean(x^2) + EPS) * weight[i] over N elements, in one workgroup.
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG = 256u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32) {
  var s = 0.0;
  for (var i = tid; i < N; i += WG) {
    s += x[i] * x[i];
  }
  partial[tid] = s;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (tid < k) {
      partial[tid] += partial[tid + k];
    }
    workgroupBarrier();
  }
  let inv = inverseSqrt(partial[0] / f32(N) + EPS);
  for (var i = tid; i < N; i += WG) {
    out[i] = x[i] * inv * weight[i];
  }
}
