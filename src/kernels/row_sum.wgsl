// The sum of one value per invocation over the first 256 of a workgroup (`#use row_sum`; invocations past
// 256 take part in the barriers only): rms_norm.wgsl, quantize_act.wgsl and matvec.wgsl's NORM add a
// row's sum of squares with it, so that a token's normalised input has the same bits in each (batch
// invariance: one token fuses the norm into its GEMVs, a batch runs it first). The includer declares
// `var<workgroup> partial: array<f32, N>`, N >= 256, and passes its subgroup_invocation_id as `sg_lane`
// (0 without subgroups). Every invocation calls it and gets the sum; `partial` may be written again as soon
// as it returns.
//
// The additions are those of a tree through workgroup memory, level s adding value i + s into value i for
// s = 128, 64, .., 1, whichever form runs: the bits do not depend on the adapter or the variant. The tree
// itself waits at 9 barriers, which every GEMV workgroup of a decode step repeats (1024 invocations each
// in the tall ones): 0.19 ms of the 8B step on the H100 (docs/perf.md). With SUM_LANES (a power of two,
// 8..32, at most the adapter's smallest subgroup: kernels::add_subgroup_defines), each invocation instead
// reads the 256 / SUM_LANES values of its lane's column of the tree (indices sg_lane % SUM_LANES + k *
// SUM_LANES), adds them in the tree's order in registers (levels 128 .. SUM_LANES), and the last levels
// run as butterflies within the subgroup: at each, both lanes of a pair add the same two values (a + b ==
// b + a), so every lane ends with the tree's sum: 2 barriers.
#if SUM_LANES
const_assert SUM_LANES >= 8u && SUM_LANES <= 32u && (SUM_LANES & (SUM_LANES - 1u)) == 0u;
const SUM_SPAN = 256u / SUM_LANES;  // values per lane column: 8, 16 or 32

// The tree's levels 128 .. 8 * SUM_LANES over column value j and those 8, 16, 24 values on (SUM_SPAN / 8 of
// them), for the column at index c. Written out, as the levels below, rather than looped over an array:
// an array indexed in loops stayed in memory on the H100 and cost 6 % of a decode step.
fn column_part(c: u32, j: u32) -> f32 {
  let i = c + j * SUM_LANES;
  if (SUM_SPAN == 8u) {
    return partial[i];
  }
  if (SUM_SPAN == 16u) {
    return partial[i] + partial[i + 8u * SUM_LANES];
  }
  return (partial[i] + partial[i + 16u * SUM_LANES]) + (partial[i + 8u * SUM_LANES] + partial[i + 24u * SUM_LANES]);
}

fn workgroup_sum(v: f32, tid: u32, sg_lane: u32) -> f32 {
  if (tid < 256u) {
    partial[tid] = v;
  }
  workgroupBarrier();
  let c = sg_lane % SUM_LANES;
  // Levels 4, 2, 1 (in units of SUM_LANES) of the column's tree.
  var total = ((column_part(c, 0u) + column_part(c, 4u)) + (column_part(c, 2u) + column_part(c, 6u))) +
              ((column_part(c, 1u) + column_part(c, 5u)) + (column_part(c, 3u) + column_part(c, 7u)));
  for (var s = SUM_LANES / 2u; s > 0u; s >>= 1u) {
    total += subgroupShuffleXor(total, s);
  }
  workgroupBarrier();
  return total;
}
#else
fn workgroup_sum(v: f32, tid: u32, sg_lane: u32) -> f32 {
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
#endif
