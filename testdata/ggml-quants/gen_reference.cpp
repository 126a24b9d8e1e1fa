// Generates this folder's reference data with llama.cpp's own prebuilt libraries (npm package
// @node-llama-cpp/linux-x64, see PROVENANCE.txt). It calls ggml's exported C functions through dlopen, so it
// needs no llama.cpp headers; the struct layouts it relies on are ggml's block sizes and the first fields of
// llama_model_quantize_params, both stable across llama.cpp versions.
//
//   g++ -O1 -std=c++20 gen_reference.cpp -o gen_reference -ldl
//   ./gen_reference LIBDIR MODELS_DIR OUTDIR
//
// Writes (little-endian throughout):
//   inputs.f32            rows of 256 floats: Gaussian, heavy-tailed and edge-case rows (see make_inputs)
//   <type>.quant          ggml's quantize_row_<type>_ref of all of inputs.f32
//   <type>.blocks         random blocks (finite scale fields, arbitrary quants)
//   <type>.blocks.f32     ggml's dequantize_row_<type> of <type>.blocks
//   synthetic-llama.gguf  a small llama-architecture model (F16 matrices, F32 norms) with 256-multiple rows
//   <model>.<ftype>.txt   for each model and ftype, llama_model_quantize's output: general.file_type and, per
//                         tensor, name, ggml type id and the FNV-1a-64 hash of its data
#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

std::string g_lib;
std::string g_out;

void* open_lib(const char* name) {
  void* h = dlopen((g_lib + "/" + name).c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    std::fprintf(stderr, "%s\n", dlerror());
    std::exit(1);
  }
  return h;
}

void* sym(void* lib, const char* name) {
  void* p = dlsym(lib, name);
  if (!p) {
    std::fprintf(stderr, "missing symbol %s\n", name);
    std::exit(1);
  }
  return p;
}

void write_file(const std::string& name, const void* data, size_t n) {
  std::FILE* f = std::fopen((g_out + "/" + name).c_str(), "wb");
  if (!f || std::fwrite(data, 1, n, f) != n || std::fclose(f) != 0) {
    std::fprintf(stderr, "cannot write %s\n", name.c_str());
    std::exit(1);
  }
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(1);
  }
  std::vector<uint8_t> out;
  uint8_t buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
  std::fclose(f);
  return out;
}

uint64_t fnv1a64(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// --- codec reference data ---

struct QType {
  const char* name;
  int block_elements;
  int block_bytes;
  std::vector<int> half_offsets;  // f16 scale fields, kept finite in random blocks
  bool f32_scale;                 // q8_K: f32 d at offset 0
};

const std::vector<QType> kTypes = {
    {"q4_0", 32, 18, {0}, false},     {"q4_1", 32, 20, {0, 2}, false},   {"q5_0", 32, 22, {0}, false},
    {"q5_1", 32, 24, {0, 2}, false},  {"q8_0", 32, 34, {0}, false},      {"q2_K", 256, 84, {80, 82}, false},
    {"q3_K", 256, 110, {108}, false}, {"q4_K", 256, 144, {0, 2}, false}, {"q5_K", 256, 176, {0, 2}, false},
    {"q6_K", 256, 210, {208}, false}, {"q8_K", 256, 292, {}, true},
};

constexpr int kRow = 256;

std::vector<float> make_inputs(std::mt19937_64& gen) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> x;
  auto row = [&](auto f) {
    for (int i = 0; i < kRow; ++i) x.push_back(f(i));
  };
  auto student_t3 = [&] {  // t with 3 degrees of freedom: heavy tails like real weight outliers
    float chi2 = 0;
    for (int k = 0; k < 3; ++k) {
      const float z = normal(gen);
      chi2 += z * z;
    }
    return normal(gen) / std::sqrt(chi2 / 3);
  };
  for (int rep = 0; rep < 4; ++rep) row([&](int) { return normal(gen); });
  for (int rep = 0; rep < 4; ++rep) row([&](int) { return 0.02f * student_t3(); });
  row([&](int) { return 1e-3f * normal(gen); });
  row([&](int) { return 300.0f * normal(gen); });
  row([&](int) { return 1e4f * normal(gen); });
  row([&](int) { return 1e-10f * normal(gen); });     // scales underflow f16
  row([&](int) { return 1e-30f * normal(gen); });     // below ggml's all-zero threshold
  row([&](int) { return 0.0f; });                     // all zero
  row([&](int) { return 0.5f; });                     // constant
  row([&](int) { return -0.25f; });                   // constant negative
  row([&](int i) { return i == 77 ? 7.0f : 0.0f; });  // one spike
  row([&](int i) { return i == 200 ? -3.0f : 1e-3f * normal(gen); });
  row([&](int) { return uniform(gen); });                                // all positive
  row([&](int) { return -uniform(gen); });                               // all negative
  row([&](int) { return 0.25f * std::floor(uniform(gen) * 33 - 16); });  // a grid: rounding ties
  row([&](int) { return 0.125f * static_cast<float>(static_cast<int>(uniform(gen) * 16) - 8); });
  row([&](int i) { return (i / 16) % 2 ? 0.0f : normal(gen); });                  // every other 16-block zero
  row([&](int i) { return (i / 32) % 2 ? 0.0f : normal(gen); });                  // every other 32-block zero
  row([&](int i) { return normal(gen) * std::ldexp(1.0f, (i / 32) * 3 - 12); });  // scales across blocks
  row([&](int i) { return normal(gen) + ((i / 16) % 2 ? 4.0f : -4.0f); });        // offset sub-blocks
  row([&](int) {
    float v = student_t3();
    return v * v * v;
  });  // very heavy tails
  row([&](int i) { return i % 2 ? 1.0f : -1.0f; });
  return x;
}

uint16_t random_finite_half(std::mt19937_64& gen) {
  for (;;) {
    const uint16_t h = static_cast<uint16_t>(gen());
    if (((h >> 10) & 0x1F) != 0x1F) return h;
  }
}

void codec_data(void* base, std::mt19937_64& gen) {
  const std::vector<float> x = make_inputs(gen);
  write_file("inputs.f32", x.data(), x.size() * 4);
  for (const QType& t : kTypes) {
    using Quantize = void (*)(const float*, void*, int64_t);
    using Dequantize = void (*)(const void*, float*, int64_t);
    auto quantize =
        reinterpret_cast<Quantize>(sym(base, ("quantize_row_" + std::string(t.name) + "_ref").c_str()));
    auto dequantize =
        reinterpret_cast<Dequantize>(sym(base, ("dequantize_row_" + std::string(t.name)).c_str()));

    std::vector<uint8_t> q(x.size() / t.block_elements * t.block_bytes);
    quantize(x.data(), q.data(), static_cast<int64_t>(x.size()));
    write_file(std::string(t.name) + ".quant", q.data(), q.size());

    const int n_blocks = t.block_elements == 32 ? 64 : 16;
    std::vector<uint8_t> blocks(static_cast<size_t>(n_blocks) * t.block_bytes);
    for (uint8_t& b : blocks) b = static_cast<uint8_t>(gen());
    for (int i = 0; i < n_blocks; ++i) {
      uint8_t* b = blocks.data() + static_cast<size_t>(i) * t.block_bytes;
      for (int off : t.half_offsets) {
        // Every fourth block takes an extreme scale: the largest half, the smallest subnormal, zero.
        const uint16_t extremes[] = {0x7BFF, 0xFBFF, 0x0001, 0x8000};
        const uint16_t h = i % 4 == 3 ? extremes[(i / 4) % 4] : random_finite_half(gen);
        b[off] = static_cast<uint8_t>(h);
        b[off + 1] = static_cast<uint8_t>(h >> 8);
      }
      if (t.f32_scale) {
        const float d =
            std::ldexp(static_cast<float>(static_cast<int64_t>(gen() % 2001) - 1000), -int(gen() % 40));
        std::memcpy(b, &d, 4);
      }
    }
    std::vector<float> y(static_cast<size_t>(n_blocks) * t.block_elements);
    dequantize(blocks.data(), y.data(), static_cast<int64_t>(y.size()));
    write_file(std::string(t.name) + ".blocks", blocks.data(), blocks.size());
    write_file(std::string(t.name) + ".blocks.f32", y.data(), y.size() * 4);
  }
}

// --- a small GGUF writer for the synthetic model ---

struct Gguf {
  std::vector<uint8_t> kv;
  uint64_t n_kv = 0;
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    std::vector<uint8_t> data;
  };
  std::vector<Tensor> tensors;

  template <class T>
  static void put(std::vector<uint8_t>& o, T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    o.insert(o.end(), p, p + sizeof v);
  }
  static void put_str(std::vector<uint8_t>& o, const std::string& s) {
    put<uint64_t>(o, s.size());
    o.insert(o.end(), s.begin(), s.end());
  }
  void key(const std::string& k, uint32_t type) {
    put_str(kv, k);
    put<uint32_t>(kv, type);
    ++n_kv;
  }
  void u32(const std::string& k, uint32_t v) {
    key(k, 4);
    put(kv, v);
  }
  void f32(const std::string& k, float v) {
    key(k, 6);
    put(kv, v);
  }
  void str(const std::string& k, const std::string& v) {
    key(k, 8);
    put_str(kv, v);
  }
  void strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9);
    put<uint32_t>(kv, 8);
    put<uint64_t>(kv, v.size());
    for (const auto& s : v) put_str(kv, s);
  }
  void write(const std::string& name) {
    std::vector<uint8_t> o;
    put<uint32_t>(o, 0x46554747);
    put<uint32_t>(o, 3);
    put<uint64_t>(o, tensors.size());
    put<uint64_t>(o, n_kv);
    o.insert(o.end(), kv.begin(), kv.end());
    uint64_t off = 0;
    for (const Tensor& t : tensors) {
      put_str(o, t.name);
      put<uint32_t>(o, static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) put<uint64_t>(o, d);
      put<uint32_t>(o, t.type);
      put<uint64_t>(o, off);
      off = (off + t.data.size() + 31) / 32 * 32;
    }
    o.resize((o.size() + 31) / 32 * 32, 0);
    for (const Tensor& t : tensors) {
      o.insert(o.end(), t.data.begin(), t.data.end());
      o.resize((o.size() + 31) / 32 * 32, 0);
    }
    write_file(name, o.data(), o.size());
  }
};

// A llama model whose matrices have 256-multiple rows, so that every K-quant and every rule of llama.cpp's
// mixes applies (stories260K's rows of 64 and 172 exercise the fallbacks instead). Matrices have few rows:
// quantization is row by row, and llama_model_quantize reads hyperparameters, not shapes.
void synthetic_model(void* base, std::mt19937_64& gen) {
  using ToHalf = uint16_t (*)(float);
  auto to_half = reinterpret_cast<ToHalf>(sym(base, "ggml_fp32_to_fp16"));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int n_layer = 8, n_embd = 256, n_ff = 512, n_vocab = 16;
  Gguf g;
  g.str("general.architecture", "llama");
  g.str("general.name", "synthetic-llama");
  g.u32("llama.context_length", 128);
  g.u32("llama.embedding_length", n_embd);
  g.u32("llama.block_count", n_layer);
  g.u32("llama.feed_forward_length", n_ff);
  g.u32("llama.rope.dimension_count", 64);
  g.u32("llama.attention.head_count", 4);
  g.u32("llama.attention.head_count_kv", 1);
  g.f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  g.u32("general.file_type", 1);
  std::vector<std::string> vocab;
  for (int i = 0; i < n_vocab; ++i) vocab.push_back("t" + std::to_string(i));
  g.str("tokenizer.ggml.model", "llama");
  g.strs("tokenizer.ggml.tokens", vocab);
  auto f16 = [&](const std::string& name, uint64_t ne0, uint64_t ne1, float scale) {
    Gguf::Tensor t{name, {ne0, ne1}, 1, {}};
    for (uint64_t i = 0; i < ne0 * ne1; ++i) {
      // A mixture: mostly Gaussian, 2% outliers ten times larger.
      const float v = normal(gen) * scale * (gen() % 50 == 0 ? 10.0f : 1.0f);
      Gguf::put<uint16_t>(t.data, to_half(v));
    }
    g.tensors.push_back(std::move(t));
  };
  auto norm = [&](const std::string& name, uint64_t n) {
    Gguf::Tensor t{name, {n}, 0, {}};
    for (uint64_t i = 0; i < n; ++i) Gguf::put<float>(t.data, 1.0f + 0.1f * normal(gen));
    g.tensors.push_back(std::move(t));
  };
  f16("token_embd.weight", n_embd, n_vocab, 0.5f);
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    norm(p + "attn_norm.weight", n_embd);
    f16(p + "attn_q.weight", n_embd, 4, 0.1f);
    f16(p + "attn_k.weight", n_embd, 2, 0.1f);
    f16(p + "attn_v.weight", n_embd, 2, 0.1f);
    f16(p + "attn_output.weight", n_embd, 4, 0.1f);
    norm(p + "ffn_norm.weight", n_embd);
    f16(p + "ffn_gate.weight", n_embd, 4, 0.1f);
    f16(p + "ffn_up.weight", n_embd, 4, 0.1f);
    f16(p + "ffn_down.weight", n_ff, 2, 0.1f);
  }
  norm("output_norm.weight", n_embd);
  f16("output.weight", n_embd, n_vocab, 0.2f);
  g.write("synthetic-llama.gguf");
}

// --- llama_model_quantize outputs ---

struct GgufApi {
  struct InitParams {
    bool no_alloc;
    void** ctx;
  };
  void* (*init_from_file)(const char*, InitParams);
  void (*free)(void*);
  int64_t (*n_tensors)(const void*);
  const char* (*tensor_name)(const void*, int64_t);
  int (*tensor_type)(const void*, int64_t);
  size_t (*tensor_offset)(const void*, int64_t);
  size_t (*tensor_size)(const void*, int64_t);
  size_t (*data_offset)(const void*);
  int64_t (*find_key)(const void*, const char*);
  uint32_t (*get_u32)(const void*, int64_t);
};

void quantize_records(void* llama, const GgufApi& api, const std::string& model_path,
                      const std::string& stem) {
  using Quantize = uint32_t (*)(const char*, const char*, const void*);
  // llama_model_quantize_params is returned in memory (it is larger than 16 bytes), so calling the function
  // with a result buffer at least as large as the struct is the same call.
  struct alignas(8) Params {
    uint8_t bytes[512];
  };
  auto default_params = reinterpret_cast<Params (*)()>(sym(llama, "llama_model_quantize_default_params"));
  auto quantize = reinterpret_cast<Quantize>(sym(llama, "llama_model_quantize"));
  const struct {
    const char* name;
    int32_t ftype;
  } ftypes[] = {{"q8_0", 7}, {"q4_0", 2}, {"q4_k_m", 15}, {"q5_k_m", 17}, {"q6_k", 18}, {"q2_k", 10}};
  for (const auto& ft : ftypes) {
    Params p = default_params();
    int32_t nthread = 1;
    std::memcpy(p.bytes + 0, &nthread, 4);   // int32_t nthread
    std::memcpy(p.bytes + 4, &ft.ftype, 4);  // enum llama_ftype ftype
    const std::string out = "/tmp/gen_reference_out.gguf";
    std::remove(out.c_str());
    const uint32_t rc = quantize(model_path.c_str(), out.c_str(), p.bytes);
    std::string text;
    if (rc != 0) {
      text = "llama_model_quantize failed\n";
    } else {
      void* ctx = api.init_from_file(out.c_str(), {true, nullptr});
      const std::vector<uint8_t> file = read_file(out);
      const int64_t ft_key = api.find_key(ctx, "general.file_type");
      text = "general.file_type " + std::to_string(api.get_u32(ctx, ft_key)) + "\n";
      for (int64_t i = 0; i < api.n_tensors(ctx); ++i) {
        const size_t off = api.data_offset(ctx) + api.tensor_offset(ctx, i);
        char line[256];
        std::snprintf(line, sizeof line, "%s %d %016llx\n", api.tensor_name(ctx, i), api.tensor_type(ctx, i),
                      static_cast<unsigned long long>(fnv1a64(file.data() + off, api.tensor_size(ctx, i))));
        text += line;
      }
      api.free(ctx);
    }
    write_file(stem + "." + ft.name + ".txt", text.data(), text.size());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s LIBDIR MODELS_DIR OUTDIR\n", argv[0]);
    return 2;
  }
  g_lib = argv[1];
  g_out = argv[3];
  void* base = open_lib("libggml-base.so");
  open_lib("libggml.v0.5.0.so");
  void* llama = open_lib("libllama.v0.5.0.so");

  std::mt19937_64 gen(20240607);
  codec_data(base, gen);
  synthetic_model(base, gen);

  GgufApi api;
  api.init_from_file = reinterpret_cast<decltype(api.init_from_file)>(sym(base, "gguf_init_from_file"));
  api.free = reinterpret_cast<decltype(api.free)>(sym(base, "gguf_free"));
  api.n_tensors = reinterpret_cast<decltype(api.n_tensors)>(sym(base, "gguf_get_n_tensors"));
  api.tensor_name = reinterpret_cast<decltype(api.tensor_name)>(sym(base, "gguf_get_tensor_name"));
  api.tensor_type = reinterpret_cast<decltype(api.tensor_type)>(sym(base, "gguf_get_tensor_type"));
  api.tensor_offset = reinterpret_cast<decltype(api.tensor_offset)>(sym(base, "gguf_get_tensor_offset"));
  api.tensor_size = reinterpret_cast<decltype(api.tensor_size)>(sym(base, "gguf_get_tensor_size"));
  api.data_offset = reinterpret_cast<decltype(api.data_offset)>(sym(base, "gguf_get_data_offset"));
  api.find_key = reinterpret_cast<decltype(api.find_key)>(sym(base, "gguf_find_key"));
  api.get_u32 = reinterpret_cast<decltype(api.get_u32)>(sym(base, "gguf_get_val_u32"));

  using BackendInit = void (*)();
  reinterpret_cast<BackendInit>(sym(llama, "llama_backend_init"))();
  quantize_records(llama, api, std::string(argv[2]) + "/stories260K.gguf", "stories260K");
  quantize_records(llama, api, g_out + "/synthetic-llama.gguf", "synthetic-llama");
  return 0;
}
