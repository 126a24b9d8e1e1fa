// One RoPE rotation (`#use rope_rotate`): the pair (a, b) = ab turned by the angle whose (cos, sin) is cs.
// rope_kv.wgsl and matvec.wgsl's ROPE_KV epilogue both rotate with it, each multiply-add an explicit fma
// and each product a single rounding, so that no compiler fuses them differently in the two kernels: a
// token's q and k have the same bits whichever kernel rotated them (batch invariance).
fn rope_rotate(ab: vec2<f32>, cs: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(fma(ab.x, cs.x, -(ab.y * cs.y)), fma(ab.x, cs.y, ab.y * cs.x));
}
