// SwiGLU's product for one element (`#use silu`): silu(g) * u = g / (1 + exp(-g)) * u. silu_mul.wgsl and
// matvec.wgsl's GLU epilogue both compute it with this function, so a token's FFN activations have the
// same bits whichever kernel made them (batch invariance).
fn silu_times(g: f32, u: f32) -> f32 {
  return g / (1.0 + exp(-g)) * u;
}
