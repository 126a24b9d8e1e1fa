// `wgllm quantize` as a subprocess: every mix of stories260K (rows of 64 and 172: the fallback types) and of
// a synthetic llama with 256-multiple rows (the K-quants and the mixes' layer rules) against what llama.cpp's
// own llama_model_quantize wrote for the same inputs (types and a hash of every tensor's bytes, recorded in
// testdata/ggml-quants), decoded weights within the formats' error bounds, metadata copied; refusing to
// overwrite the input; no output or PATH.tmp left after a failed write or an interrupt.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "gguf/gguf_file.hpp"
#include "gguf/gguf_writer.hpp"
#include "quant/codec.hpp"
#include "unit/cli/wgllm_process.hpp"
#include "unit/quant/format_spec.hpp"

namespace wgllm::cli {
namespace {

using gguf::TensorType;
using test::run_wgllm;

const char* const kTypes[] = {"q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k", "q2_k"};

std::string stories() {
  return test::source_path("models/stories260K.gguf");
}
std::string synthetic() {
  return test::testdata_path("ggml-quants/synthetic-llama.gguf");
}
bool exists(const std::string& path) {
  return std::filesystem::exists(path);
}

uint64_t fnv1a64(std::span<const uint8_t> bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

// llama_model_quantize's output for `model` and `type`: general.file_type and, per tensor, type and hash.
struct Record {
  uint32_t file_type = 0;
  std::map<std::string, std::pair<TensorType, uint64_t>> tensors;
};

Record record(const std::string& model, const std::string& type) {
  std::istringstream in(test::read_file(test::testdata_path("ggml-quants/" + model + "." + type + ".txt")));
  Record r;
  std::string key;
  in >> key >> r.file_type;
  std::string name, hash;
  uint32_t t;
  while (in >> name >> t >> hash)
    r.tensors[name] = {static_cast<TensorType>(t), std::stoull(hash, nullptr, 16)};
  return r;
}

std::vector<float> decode(const gguf::GgufFile& f, const gguf::TensorInfo& t) {
  std::vector<float> v(t.n_elements);
  quant::dequantize_row(t.type, f.tensor_bytes(t).data(), v.data(), static_cast<int64_t>(v.size()));
  return v;
}

// Every element of `got` (type `type`) within the format's bound of the original weight.
void expect_within_bounds(const gguf::GgufFile& out, const gguf::TensorInfo& t,
                          const std::vector<float>& want) {
  const std::vector<float> got = decode(out, t);
  const gguf::TypeTraits tr = *gguf::type_traits(static_cast<uint32_t>(t.type));
  const uint8_t* bytes = out.tensor_bytes(t).data();
  for (size_t i = 0; i < got.size(); ++i) {
    double bound = 0;
    if (t.type == TensorType::F16) {
      bound = std::fabs(want[i]) * 0x1p-11 + 0x1p-25;  // rounding to the nearest half
    } else if (tr.block_elements > 1) {
      const auto g = quant::spec::grid(t.type, bytes + i / tr.block_elements * tr.block_bytes,
                                       static_cast<int>(i % tr.block_elements));
      bound = quant::spec::error_bound(g, want[i]);
    }
    ASSERT_LE(std::fabs(static_cast<double>(got[i]) - want[i]), bound)
        << t.name << " (" << gguf::type_name(t.type) << ") element " << i << ": " << got[i] << " vs "
        << want[i];
  }
}

void expect_like_llama_cpp(const std::string& input, const std::string& model, const std::string& type) {
  SCOPED_TRACE(model + " " + type);
  const std::string out_path = test::temp_dir() + "/" + model + "." + type + ".gguf";
  const test::Process p = run_wgllm({"quantize", input, out_path, type});
  ASSERT_EQ(p.exit_code, 0) << p.command << "\n" << p.err;
  EXPECT_EQ(p.out, "");
  EXPECT_FALSE(exists(out_path + ".tmp"));
  const auto in = gguf::GgufFile::open(input);
  const auto out = gguf::GgufFile::open(out_path);
  const Record want = record(model, type);

  EXPECT_EQ(out->require_uint("general.file_type"), want.file_type);
  EXPECT_EQ(out->require_uint("general.quantization_version"), 2u);
  for (const gguf::KeyValue& kv : in->metadata()) {
    if (kv.key == "general.file_type" || kv.key == "general.quantization_version") continue;
    const gguf::Value* v = out->find(kv.key);
    ASSERT_NE(v, nullptr) << kv.key;
    EXPECT_EQ(v->type, kv.value.type) << kv.key;
    EXPECT_EQ(v->array_size(), kv.value.array_size()) << kv.key;
    EXPECT_EQ(v->strings, kv.value.strings) << kv.key;
    EXPECT_EQ(v->str, kv.value.str) << kv.key;
    EXPECT_EQ(v->u, kv.value.u) << kv.key;
  }

  ASSERT_EQ(out->tensors().size(), want.tensors.size());
  for (const gguf::TensorInfo& t : out->tensors()) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(want.tensors.count(t.name));
    EXPECT_EQ(t.type, want.tensors.at(t.name).first) << gguf::type_name(t.type);
    EXPECT_EQ(fnv1a64(out->tensor_bytes(t)), want.tensors.at(t.name).second)
        << "data differs from llama.cpp's";
    const gguf::TensorInfo* src = in->find_tensor(t.name);
    ASSERT_NE(src, nullptr);
    EXPECT_EQ(t.dims, src->dims);
    expect_within_bounds(*out, t, decode(*in, *src));
  }
}

TEST(Quantize, StoriesInEveryMixEqualsLlamaCpp) {
  for (const char* type : kTypes) expect_like_llama_cpp(stories(), "stories260K", type);
}

TEST(Quantize, SyntheticLlamaInEveryMixEqualsLlamaCpp) {
  for (const char* type : kTypes) expect_like_llama_cpp(synthetic(), "synthetic-llama", type);
}

TEST(Quantize, ReportsFallbacksProgressAndASummaryOnStderr) {
  const std::string out = test::temp_dir() + "/report.gguf";
  const test::Process p = run_wgllm({"quantize", stories(), out, "Q4_K_M"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(p.out, "");
  EXPECT_NE(p.err.find("blk.0.ffn_down.weight: row length 172 is not a multiple of q4_K's 256-weight blocks: "
                       "stored as f16"),
            std::string::npos)
      << p.err;
  EXPECT_NE(p.err.find("quantizing: 100%"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("wrote " + out + ": q4_k_m (general.file_type 15)"), std::string::npos) << p.err;
}

TEST(Quantize, ThreadCountDoesNotChangeTheOutput) {
  const std::string one = test::temp_dir() + "/t1.gguf", four = test::temp_dir() + "/t4.gguf";
  ASSERT_EQ(run_wgllm({"quantize", synthetic(), one, "q4_k_m", "-t", "1"}).exit_code, 0);
  ASSERT_EQ(run_wgllm({"quantize", synthetic(), four, "q4_k_m", "--threads", "4"}).exit_code, 0);
  EXPECT_TRUE(test::read_file(one) == test::read_file(four));
}

TEST(Quantize, RequantizesQuantizedInputWithAWarning) {
  const std::string q8 = test::temp_dir() + "/requant-src.gguf", out = test::temp_dir() + "/requant.gguf";
  ASSERT_EQ(run_wgllm({"quantize", stories(), q8, "q8_0"}).exit_code, 0);
  const test::Process p = run_wgllm({"quantize", q8, out, "q4_k_m"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_NE(p.err.find("already quantized"), std::string::npos) << p.err;
  const auto f = gguf::GgufFile::open(out);
  const Record want =
      record("stories260K", "q4_k_m");  // the mix depends on names and shapes, not input types
  for (const gguf::TensorInfo& t : f->tensors()) EXPECT_EQ(t.type, want.tensors.at(t.name).first) << t.name;
}

TEST(Quantize, RefusesToOverwriteItsInput) {
  const std::string dir = test::temp_dir() + "/overwrite";
  std::filesystem::create_directories(dir);
  const std::string input = dir + "/model.gguf";
  std::filesystem::copy_file(stories(), input);
  const std::string before = test::read_file(input);
  std::filesystem::create_hard_link(input, dir + "/link.gguf");
  for (const std::string& out : {input, dir + "/./model.gguf", dir + "/link.gguf"}) {
    const test::Process p = run_wgllm({"quantize", input, out, "q8_0"});
    EXPECT_EQ(p.exit_code, 2) << out << "\n" << p.err;
    EXPECT_NE(p.err.find("refusing to overwrite"), std::string::npos) << p.err;
  }
  // Nor may the temporary file the writer streams to (OUT.tmp) be the input.
  std::filesystem::rename(input, dir + "/x.gguf.tmp");
  const test::Process tmp = run_wgllm({"quantize", dir + "/x.gguf.tmp", dir + "/x.gguf", "q8_0"});
  EXPECT_EQ(tmp.exit_code, 2) << tmp.err;
  EXPECT_TRUE(test::read_file(dir + "/x.gguf.tmp") == before);
  EXPECT_FALSE(exists(dir + "/x.gguf"));
}

TEST(Quantize, BadUsageAndBadInputAreExitTwo) {
  const std::string out = test::temp_dir() + "/bad.gguf";
  const test::Process unknown = run_wgllm({"quantize", stories(), out, "q4_k"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("q8_0, q4_0, q4_k_m, q5_k_m, q6_k, q2_k"), std::string::npos) << unknown.err;
  EXPECT_EQ(run_wgllm({"quantize", stories(), out}).exit_code, 2);
  EXPECT_EQ(run_wgllm({"quantize", test::temp_dir() + "/missing.gguf", out, "q8_0"}).exit_code, 2);

  // A tensor of a type without a decoder, which the mix wants converted: refused up front, naming it.
  gguf::GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.add_tensor("blk.0.attn_q.weight", TensorType::IQ2_XXS, {256, 2}, std::vector<uint8_t>(2 * 66));
  const std::string iq = test::temp_dir() + "/iq.gguf";
  w.write(iq);
  const test::Process p = run_wgllm({"quantize", iq, out, "q4_k_m"});
  EXPECT_EQ(p.exit_code, 2);
  EXPECT_NE(p.err.find("blk.0.attn_q.weight"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("iq2_xxs"), std::string::npos) << p.err;
  EXPECT_FALSE(exists(out));

  // An output directory that does not exist: nothing is created anywhere.
  const std::string nowhere = test::temp_dir() + "/no-such-dir/out.gguf";
  EXPECT_EQ(run_wgllm({"quantize", stories(), nowhere, "q8_0"}).exit_code, 2);
  EXPECT_FALSE(exists(test::temp_dir() + "/no-such-dir"));
}

// Tests run as root, so an unwritable directory would not stop the writer: a file-size limit makes the
// write itself fail part way (EFBIG, with SIGXFSZ ignored so the write returns an error).
TEST(Quantize, AFailedWriteLeavesNoFileBehind) {
  const std::string dir = test::temp_dir() + "/full";
  std::filesystem::create_directories(dir);
  const std::string out = dir + "/out.gguf";
  const std::string cmd = "trap '' XFSZ; ulimit -f 64; exec '" + std::string(WGLLM_BINARY) + "' quantize '" +
                          stories() + "' '" + out + "' q8_0 2>'" + dir + "/err'";
  const int status = std::system(("sh -c \"" + cmd + "\"").c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << test::read_file(dir + "/err");
  EXPECT_NE(test::read_file(dir + "/err").find("write failed"), std::string::npos)
      << test::read_file(dir + "/err");
  EXPECT_FALSE(exists(out));
  EXPECT_FALSE(exists(out + ".tmp"));
}

// A model whose output is large enough (a 96 MiB tensor the mix keeps as it is) that writing it takes a
// while: the test waits until OUT.tmp appears, interrupts, and expects the process to die of SIGINT with
// neither OUT nor OUT.tmp left.
TEST(Quantize, InterruptDuringTheWriteRemovesTheTemporaryFile) {
  const std::string dir = test::temp_dir() + "/interrupt";
  std::filesystem::create_directories(dir);
  const std::string input = dir + "/big.gguf", out = dir + "/out.gguf";
  {
    gguf::GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.add_tensor("big_norm.weight", TensorType::F32, {24u << 20}, std::vector<uint8_t>(96u << 20, 0x3F));
    w.write(input);
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::vector<char*> argv = {const_cast<char*>(WGLLM_BINARY),  const_cast<char*>("quantize"),
                               const_cast<char*>(input.c_str()), const_cast<char*>(out.c_str()),
                               const_cast<char*>("q8_0"),        nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, WGLLM_BINARY, &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    bool sent = false;
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (!sent && exists(out + ".tmp")) {
        kill(pid, SIGINT);
        sent = true;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        FAIL() << "quantize did not finish";
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (!sent) {  // finished before the tmp file was seen: try again
      std::filesystem::remove(out);
      continue;
    }
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << "status " << status;
    EXPECT_FALSE(exists(out + ".tmp"));
    EXPECT_FALSE(exists(out));
    return;
  }
  GTEST_SKIP() << "the write was too quick to interrupt three times in a row";
}

}  // namespace
}  // namespace wgllm::cli
