// The sum of one value per invocation over the first 256 of a workgroup (`#use row_sum`; invocations past
// 256 take part in the barriers only): rms_norm.wgsl,
// quantize_act.wgsl and matvec.wgsl's NORM add a row's sum of squares with it, so that a token's
// normalised input has the same bits in each (batch invariance: one token fuses the norm into its GEMVs,
// a batch runs it first). The includer declares `var<workgroup> partial: array<f32, N>`, N >= 256.
// A tree through workgroup memory. (Forms with 3-4 barriers instead of nine gain 2-3 % of a decode step
// on the H100 once GEMV workgroups hold 1024 invocations, but gave a fused GEMV other bits than rms_norm's
// on lavapipe, not yet explained: docs/perf.md, session 9.) Every
// invocation calls it and gets the sum; `partial` may be written again as soon as it returns.
fn workgroup_sum(v: f32, tid: u32) -> f32 {
  if (tid < 256u) {
    partial[tid] = v;
  }
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (tid < s) {
      partial[tid] += partial[tid + s];
    }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}
