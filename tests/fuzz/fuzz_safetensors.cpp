// A Hugging Face model folder from a stranger, as the model loader reads it (src/hf). Byte 0 of an input
// picks the subject, the rest is its bytes:
//   0: a safetensors file;
//   1: model.safetensors.index.json, a NUL byte, then the bytes of the shard "shard.safetensors" (an index
//      may name other shards, which are missing: that too must be Error(BadInput));
//   2: config.json.
// The reader must answer Error(BadInput), or a table whose every tensor lies inside the file's data
// section, with its byte size its element count times its dtype's size, and whose tensors tile the data
// section; the F32/F16/BF16 ones are then read in full.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "fuzz/fuzz_support.hpp"
#include "hf/config.hpp"
#include "hf/safetensors.hpp"

namespace {

using namespace wgllm;

void check_file(const hf::SafetensorsFile& f, uint64_t file_size) {
  fuzz::check(f.data_offset() >= 8 && f.data_offset() <= file_size,
              "the data section starts outside the file");
  uint64_t data_bytes = 0;
  for (const hf::TensorInfo& t : f.tensors()) {
    uint64_t elements = 1;
    for (uint64_t d : t.shape) elements *= d;
    fuzz::check(elements == t.n_elements, "a tensor's element count is not its shape's product", t.name);
    fuzz::check(t.n_bytes == t.n_elements * hf::dtype_bytes(t.dtype),
                "a tensor's size is not its elements' size", t.name);
    fuzz::check(t.offset >= f.data_offset() && t.offset <= file_size && t.n_bytes <= file_size - t.offset,
                "a tensor lies outside the file", t.name);
    fuzz::check(f.find(t.name) == &t, "a tensor cannot be found by its name", t.name);
    data_bytes += t.n_bytes;
    const auto bytes = f.bytes(t);
    fuzz::check(bytes.size() == t.n_bytes, "a tensor's bytes are not its size", t.name);
    if (t.dtype == hf::Dtype::F32 || t.dtype == hf::Dtype::F16 || t.dtype == hf::Dtype::BF16) {
      std::vector<float> out(t.n_elements);
      f.read_f32(t, 0, t.n_elements, out.data());
      if (t.n_elements > 1) f.read_strided(t, 0, t.n_elements - 1, 2, out.data());
    }
  }
  fuzz::check(data_bytes == file_size - f.data_offset(), "the tensors do not tile the data section");
}

void config(const std::string& path) {
  const hf::Config c = hf::Config::read(path);
  for (const auto& call :
       {+[](const hf::Config& c) { (void)c.architecture(); }, +[](const hf::Config& c) { (void)c.rope(); },
        +[](const hf::Config& c) { (void)c.u32("hidden_size", 0); },
        +[](const hf::Config& c) { (void)c.number("rms_norm_eps", 1e-5); },
        +[](const hf::Config& c) { (void)c.boolean("tie_word_embeddings", false); },
        +[](const hf::Config& c) { (void)c.string("hidden_act", "silu"); },
        +[](const hf::Config& c) { (void)c.ints("no_rope_layers"); },
        +[](const hf::Config& c) { (void)c.strings("layer_types"); }}) {
    try {
      call(c);
    } catch (const Error& e) {
      fuzz::check(e.kind() == ErrorKind::BadInput, "a hostile config.json gave a runtime error", e.what());
    }
  }
  (void)c.model_type();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int subject = data[0] % 3;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (subject == 0) {
      const fuzz::MemoryFile file(input);
      check_file(*hf::SafetensorsFile::open(file.path()), input.size());
    } else if (subject == 1) {
      const std::string dir = fuzz::temp_dir() + "/model";
      std::filesystem::create_directories(dir);
      const size_t nul = input.find('\0');
      fuzz::write_temp("model/model.safetensors.index.json", input.substr(0, nul));
      fuzz::write_temp("model/shard.safetensors", nul == std::string_view::npos ? "" : input.substr(nul + 1));
      const auto set = hf::TensorSet::open(dir);
      for (const auto& f : set->files()) check_file(*f, std::filesystem::file_size(f->path()));
      for (const std::string& name : set->names()) {
        fuzz::check(set->require(name).info->name == name, "the set maps a name to another tensor", name);
      }
    } else {
      config(fuzz::write_temp("config.json", input));
    }
  } catch (const Error& e) {
    fuzz::check(e.kind() == ErrorKind::BadInput, "a hostile model file gave a runtime error", e.what());
    fuzz::check(std::string_view(e.what()).size() > 0, "an error without a message");
  }
  return 0;
}
