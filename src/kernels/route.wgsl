// One chosen expert of a token (moe_route.wgsl's output, read by the mixture-of-experts kernels): route
// [tokens, K] holds each token's K experts in order of rank, with the weight its output (or input) takes.
struct Route {
  expert: u32,
  weight: f32,
}
