#include "quant/mix.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <numeric>

#include "core/error.hpp"

namespace wgllm::quant {

namespace {

using gguf::TensorType;

struct FileTypeEntry {
  std::string_view name;
  FileType ftype;
  TensorType base;
};

constexpr FileTypeEntry kFileTypes[] = {
    {"q8_0", FileType::Q8_0, TensorType::Q8_0},     {"q4_0", FileType::Q4_0, TensorType::Q4_0},
    {"q4_k_m", FileType::Q4_K_M, TensorType::Q4_K}, {"q5_k_m", FileType::Q5_K_M, TensorType::Q5_K},
    {"q6_k", FileType::Q6_K, TensorType::Q6_K},     {"q2_k", FileType::Q2_K, TensorType::Q2_K},
};

const FileTypeEntry& entry(FileType ftype) {
  for (const FileTypeEntry& e : kFileTypes) {
    if (e.ftype == ftype) return e;
  }
  fail_input("unknown file type " + std::to_string(static_cast<uint32_t>(ftype)));
}

uint32_t block_elements(TensorType t) {
  return gguf::type_traits(static_cast<uint32_t>(t))->block_elements;
}

// ggml_n_dims: trailing dimensions of 1 do not count.
size_t n_dims(const gguf::TensorInfo& t) {
  size_t n = t.dims.size();
  while (n > 1 && t.dims[n - 1] == 1) --n;
  return n;
}

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// tensor_allows_quantization: only 2-D and 3-D weights, minus norms and the small or special tensors that
// llama.cpp keeps as they are in every architecture it knows.
bool allows_quantization(const gguf::TensorInfo& t) {
  if (n_dims(t) < 2) return false;
  const std::string_view name = t.name;
  if (!name.ends_with("weight")) return false;
  static constexpr std::string_view kKeptParts[] = {"_norm.weight",
                                                    "ffn_gate_inp.weight",
                                                    "ffn_gate_tid2eid.weight",
                                                    "altup",
                                                    "laurel",
                                                    "per_layer_model_proj",
                                                    "ssm_conv1d",
                                                    "shortconv.conv.weight",
                                                    "indexer.k_proj.weight",
                                                    "indexer.q_proj.weight",
                                                    "time_mix_first.weight",
                                                    "time_mix_w0.weight",
                                                    "time_mix_w1.weight",
                                                    "time_mix_w2.weight",
                                                    "time_mix_v0.weight",
                                                    "time_mix_v1.weight",
                                                    "time_mix_v2.weight",
                                                    "time_mix_a0.weight",
                                                    "time_mix_a1.weight",
                                                    "time_mix_a2.weight",
                                                    "time_mix_g1.weight",
                                                    "time_mix_g2.weight",
                                                    "time_mix_decay_w1.weight",
                                                    "time_mix_decay_w2.weight",
                                                    "time_mix_lerp_fused.weight",
                                                    "attn_rel_b.weight",
                                                    ".position_embd",
                                                    "sam.pos_embd",
                                                    "sam.neck.",
                                                    "sam.net_",
                                                    ".rel_pos",
                                                    ".patch_embd",
                                                    ".patch_merger",
                                                    "a.rvq.codebook",
                                                    "mm.a.code_embd"};
  for (std::string_view part : kKeptParts) {
    if (contains(name, part)) return false;
  }
  return name != "position_embd.weight" && name != "token_types.weight";
}

enum class Category { TokenEmbd, AttnQ, AttnV, AttnK, AttnOutput, FfnDown, Output, Other };

// tensor_get_category, reduced to what the supported mixes distinguish (fused qkv and MLA kv_b count as
// attn_v, as llama.cpp's category_is_attn_v says; ffn_up and ffn_gate change nothing in these mixes).
Category category(std::string_view name) {
  if (name == "output.weight") return Category::Output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Category::TokenEmbd;
  if (contains(name, "attn_qkv.weight") || contains(name, "attn_kv_b.weight") ||
      contains(name, "attn_v.weight")) {
    return Category::AttnV;
  }
  if (contains(name, "attn_k.weight")) return Category::AttnK;
  if (contains(name, "attn_q.weight")) return Category::AttnQ;
  if (contains(name, "attn_output.weight")) return Category::AttnOutput;
  if (contains(name, "ffn_down")) return Category::FfnDown;
  return Category::Other;
}

// The N of a "blk.N." name, or -1 (as llama.cpp's sscanf leaves it).
int layer_of(const std::string& name) {
  int layer = -1;
  std::sscanf(name.c_str(), "blk.%d.", &layer);
  return layer;
}

// The layers where the _M mixes spend more bits: the first and last eighth, and every third layer between.
bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// tensor_type_fallback: K-quants need rows of 256; a row length that does not fit gets a 32-block type,
// and one that fits neither gets f16.
TensorChoice with_fallback(TensorType wanted, uint64_t row_length) {
  TensorChoice c{wanted};
  if (row_length % block_elements(wanted) == 0) return c;
  c.fallback_from = wanted;
  switch (wanted) {
    case TensorType::Q2_K:
    case TensorType::Q3_K:
      c.type = TensorType::Q4_0;
      break;
    case TensorType::Q4_K:
      c.type = TensorType::Q5_0;
      break;
    case TensorType::Q5_K:
      c.type = TensorType::Q5_1;
      break;
    case TensorType::Q6_K:
      c.type = TensorType::Q8_0;
      break;
    default:
      break;
  }
  if (row_length % block_elements(c.type) != 0) c.type = TensorType::F16;
  return c;
}

// llama_tensor_get_type_impl's counters, advanced in llama.cpp's tensor order.
struct MixState {
  FileType ftype;
  const ModelInfo& model;
  bool tied_embeddings = true;  // no output.weight: token_embd doubles as the output matrix
  int n_attention_wv = 0;
  int i_attention_wv = 0;
  int i_ffn_down = 0;
};

TensorType choose(MixState& s, const gguf::TensorInfo& t) {
  const ModelInfo& m = s.model;
  const bool falcon = m.arch == "falcon";
  const bool is_70b = m.arch == "llama" && m.n_layer == 80 && m.n_head != m.n_head_kv;
  const uint32_t n_gqa = m.n_head_kv ? m.n_head / m.n_head_kv : 0;
  const FileType ft = s.ftype;
  const bool k_m = ft == FileType::Q4_K_M || ft == FileType::Q5_K_M;
  TensorType type = base_type(ft);

  const Category cat = category(t.name);
  if (cat == Category::Output || (s.tied_embeddings && cat == Category::TokenEmbd)) {
    if (falcon || t.dims[0] % block_elements(type) != 0) {
      type = TensorType::Q8_0;
    } else if (type != TensorType::Q8_0) {
      type = TensorType::Q6_K;
    }
  } else if (cat == Category::AttnV) {
    if (ft == FileType::Q2_K) {
      type = n_gqa >= 4 ? TensorType::Q4_K : TensorType::Q3_K;
    } else if (k_m && use_more_bits(s.i_attention_wv, s.n_attention_wv)) {
      type = TensorType::Q6_K;
    }
    // 70B shares each attn_v among 8 heads, so it is 8x smaller than attn_q: more bits cost little.
    if (is_70b && (type == TensorType::Q3_K || type == TensorType::Q4_K)) type = TensorType::Q5_K;
    if (m.n_expert == 8) type = TensorType::Q8_0;
    ++s.i_attention_wv;
  } else if (cat == Category::AttnK) {
    if (m.n_expert == 8) type = TensorType::Q8_0;
  } else if (cat == Category::FfnDown) {
    int i_layer = s.i_ffn_down;
    const int n_layer = static_cast<int>(m.n_layer);
    if (m.n_expert > 1) {
      // Expert tensors are not one per layer in file order, so the layer comes from the name.
      i_layer = layer_of(t.name);
      if (i_layer < 0 || i_layer >= n_layer) {
        fail_input("tensor '" + t.name + "': cannot tell its layer (0.." + std::to_string(n_layer - 1) +
                   ") from its name, which the quantization mix needs");
      }
    }
    if (ft == FileType::Q2_K) {
      type = TensorType::Q3_K;
    } else if (ft == FileType::Q4_K_M && falcon) {
      type = i_layer < n_layer / 16            ? TensorType::Q6_K
             : use_more_bits(i_layer, n_layer) ? TensorType::Q5_K
                                               : TensorType::Q4_K;
    } else if (k_m && use_more_bits(i_layer, n_layer)) {
      type = TensorType::Q6_K;
    }
    ++s.i_ffn_down;
  } else if (cat == Category::AttnOutput && !falcon) {
    if (m.n_expert == 8) {
      if (ft == FileType::Q2_K || ft == FileType::Q4_K_M) type = TensorType::Q5_K;
    } else if (ft == FileType::Q2_K) {
      type = TensorType::Q3_K;
    }
  }
  return type;
}

uint32_t first_uint(const gguf::GgufFile& f, const std::string& key, uint32_t def) {
  const gguf::Value* v = f.find(key);
  if (!v) return def;
  if (v->type == gguf::ValueType::ARRAY) {
    if (!v->uints.empty()) return static_cast<uint32_t>(v->uints[0]);
    if (!v->ints.empty() && v->ints[0] >= 0) return static_cast<uint32_t>(v->ints[0]);
    return def;
  }
  return static_cast<uint32_t>(f.get_uint(key, def));
}

}  // namespace

std::optional<FileType> parse_file_type(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const FileTypeEntry& e : kFileTypes) {
    if (e.name == lower) return e.ftype;
  }
  return std::nullopt;
}

std::string_view file_type_name(FileType ftype) {
  return entry(ftype).name;
}

std::string file_type_names() {
  std::string names;
  for (const FileTypeEntry& e : kFileTypes) names += (names.empty() ? "" : ", ") + std::string(e.name);
  return names;
}

TensorType base_type(FileType ftype) {
  return entry(ftype).base;
}

ModelInfo model_info(const gguf::GgufFile& file) {
  ModelInfo m;
  m.arch = file.get_string("general.architecture", "");
  int max_layer = -1;
  for (const gguf::TensorInfo& t : file.tensors()) max_layer = std::max(max_layer, layer_of(t.name));
  m.n_layer = first_uint(file, m.arch + ".block_count", static_cast<uint32_t>(max_layer + 1));
  m.n_head = first_uint(file, m.arch + ".attention.head_count", 0);
  m.n_head_kv = first_uint(file, m.arch + ".attention.head_count_kv", m.n_head);
  m.n_expert = first_uint(file, m.arch + ".expert_count", 0);
  return m;
}

std::vector<TensorChoice> choose_types(FileType ftype, const ModelInfo& model,
                                       const std::vector<gguf::TensorInfo>& tensors) {
  MixState s{ftype, model};
  for (const gguf::TensorInfo& t : tensors) {
    if (category(t.name) == Category::Output) s.tied_embeddings = false;
    if (category(t.name) == Category::AttnV) ++s.n_attention_wv;
  }
  // llama.cpp walks tensors sorted by layer, then name (llama_model_loader's weight_name_comparer); the
  // layer-counting rules depend on that order.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int la = layer_of(tensors[a].name), lb = layer_of(tensors[b].name);
    return la != lb ? la < lb : tensors[a].name < tensors[b].name;
  });
  std::vector<TensorChoice> out(tensors.size());
  for (size_t i : order) {
    const gguf::TensorInfo& t = tensors[i];
    if (!allows_quantization(t)) {
      out[i] = TensorChoice{t.type, false, std::nullopt};
      continue;
    }
    out[i] = with_fallback(choose(s, t), t.dims[0]);
  }
  return out;
}

}  // namespace wgllm::quant
