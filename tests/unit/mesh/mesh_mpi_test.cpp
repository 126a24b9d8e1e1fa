// `wgllm run|serve|logits --mesh` under OpenMPI on this machine (every rank on the software Vulkan device),
// and --devices in one process: the text equals llama2.c's and the CPU reference's, logits equal one
// device's bit for bit and the float64 reference's within tolerance, a server answers a chat request as the
// reference would. Faults: a killed or stopped rank is named by stage and host within 5 s, the job ends with
// a non-zero status and no process of it is left; a server answers its running request with an error
// first, and stays up degraded under `--mca orte_abort_on_non_zero_status 0` (new requests get 503). Every
// wait has a deadline.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>

#include "cpu/reference_model.hpp"
#include "gguf/gguf_file.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/cli/wgllm_process.hpp"
#include "unit/mesh/mpi_job.hpp"
#include "unit/runtime/runtime_fixtures.hpp"

namespace wgllm::mesh {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Matcher;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

// --devices: the stages in one process, no MPI.
TEST(MeshDevices, TwoStagesOnLocalAdaptersGiveLlama2csStory) {
  const test::Process p = test::run_wgllm({"run", "--devices", "0,0", "--temp", "0", "-n", "200"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(test::without_final_newline(p.out), test::llama2c_story());
  EXPECT_THAT(p.err, HasSubstr("stage 1: adapter 0, "));
}

#if WGLLM_MESH

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void expect_ended_cleanly(test::MpiJob& job, int expected_status) {
  const std::optional<int> status = job.wait(60);
  ASSERT_TRUE(status) << job.command() << " did not end within 60 s\n" << job.err();
  EXPECT_EQ(*status, expected_status) << job.command() << "\n" << job.err();
  EXPECT_TRUE(job.alive().empty()) << "processes of the job are left";
}

class MeshRun : public ::testing::TestWithParam<int> {};

// 2 stages (the layers split 4 + 1 by --split) and 3 stages (by memory): llama2.c's story, and the plan.
TEST_P(MeshRun, GreedyStoryIsLlama2csOnEveryRankCount) {
  const int np = GetParam();
  std::vector<std::string> args = {"run", "--mesh", "--temp", "0", "-n", "200"};
  if (np == 2) args.insert(args.end(), {"--split", "4,1"});
  test::MpiJob job(np, args);
  expect_ended_cleanly(job, 0);
  EXPECT_EQ(test::without_final_newline(job.out()), test::llama2c_story());
  const std::string err = job.err();
  EXPECT_THAT(err, HasSubstr("mesh: " + std::to_string(np) + " stages for "));
  EXPECT_THAT(err, HasSubstr("stage 0: rank 0 on "));
  EXPECT_THAT(err,
              HasSubstr("stage " + std::to_string(np - 1) + ": rank " + std::to_string(np - 1) + " on "));
  EXPECT_THAT(err, HasSubstr(np == 2 ? "layers 0-3 + embeddings" : "+ embeddings"));
  EXPECT_THAT(err, HasSubstr(np == 2 ? "layer 4 + output" : "+ output"));
  EXPECT_THAT(err, HasSubstr(std::to_string(np) + " stages ready in "));
}

INSTANTIATE_TEST_SUITE_P(Ranks, MeshRun, ::testing::Values(2, 3));

// A prompt of 129 tokens goes through 3 stages in micro-batches (each through the prefill GEMM, as one
// device runs the whole prompt): the continuation is the reference's and one device's.
TEST(MeshRunPrompt, LongPromptInMicroBatchesContinuesAsTheReference) {
  const std::string prompt =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. One "
      "day, she saw a big, red ball in the park. She wanted to play with it, but it was too high. Lily asked "
      "her mom for help. Her mom smiled and said, yes. They played with the ball all day long and had lots "
      "of fun together. The end. Then one day";
  test::MpiJob job(3, {"run", "--mesh", "--temp", "0", "-n", "40", "-p", prompt, "--micro-batch", "32"});
  expect_ended_cleanly(job, 0);
  auto file = gguf::GgufFile::open(test::stories260k_path());
  const auto tok = tokenizer::Tokenizer::from_gguf(*file);
  const std::vector<int32_t> ids = tok->encode(prompt, true);
  ASSERT_GT(ids.size(), 96u) << "the prompt must span several micro-batches";
  EXPECT_EQ(test::without_final_newline(job.out()),
            prompt + test::text_of(*tok, test::reference_greedy(*file, ids, 40, tok.get()),
                                   /*strip_leading_space=*/false));
  const test::Process single = test::run_wgllm({"run", "--temp", "0", "-n", "40", "-p", prompt});
  ASSERT_EQ(single.exit_code, 0) << single.err;
  EXPECT_EQ(job.out(), single.out);
}

std::vector<float> read_f32(const std::string& path) {
  const std::string bytes = test::read_file(path);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

// A synthetic Q4_0 model (dim 256, 4 layers) over 3 ranks, and over 2 local adapters: every position's
// logits have one device's bits, and with --f32-activations (the reference's arithmetic: int8 inputs are
// bounded in runtime/batch_test.cpp) are the float64 reference's within the Q4_0 tolerance.
TEST(MeshLogitsCommand, SyntheticModelLogitsEqualOneDevicesBitForBit) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(gguf::TensorType::Q4_0), 2700);
  const std::string model = m.write("mesh-logits.gguf");
  std::vector<int32_t> ids;
  std::string ids_text;
  std::mt19937_64 gen = test::rng(27);
  for (int i = 0; i < 30; ++i) {
    ids.push_back(static_cast<int32_t>(gen() % 500));
    ids_text += (i ? "," : "") + std::to_string(ids.back());
  }
  const std::string dir = test::temp_dir();
  const test::Process single =
      test::run_wgllm({"logits", "-m", model, "--ids", ids_text, "-o", dir + "/one.f32"});
  ASSERT_EQ(single.exit_code, 0) << single.err;
  test::MpiJob job(3, {"logits", "--mesh", "-m", model, "--ids", ids_text, "-o", dir + "/mesh.f32"});
  expect_ended_cleanly(job, 0);
  const test::Process local = test::run_wgllm(
      {"logits", "--devices", "0,0", "-m", model, "--ids", ids_text, "-o", dir + "/local.f32"});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  const std::vector<float> one = read_f32(dir + "/one.f32");
  ASSERT_EQ(one.size(), ids.size() * 500);
  EXPECT_TRUE(read_f32(dir + "/mesh.f32") == one) << "3 ranks' logits differ from one device's";
  EXPECT_TRUE(read_f32(dir + "/local.f32") == one) << "--devices 0,0 logits differ from one device's";

  const test::Process f32 = test::run_wgllm(
      {"logits", "--f32-activations", "-m", model, "--ids", ids_text, "-o", dir + "/f32.f32"});
  ASSERT_EQ(f32.exit_code, 0) << f32.err;
  const std::vector<float> exact = read_f32(dir + "/f32.f32");
  ASSERT_EQ(exact.size(), ids.size() * 500);
  auto file = gguf::GgufFile::open(model);
  cpu::ReferenceModel ref(*file);
  const std::vector<std::vector<double>> expected = ref.forward(ids);
  for (size_t p = 0; p < ids.size(); ++p) {
    const std::vector<float> row(exact.begin() + p * 500, exact.begin() + (p + 1) * 500);
    EXPECT_LT(test::relative_error(row, expected[p]), 1e-3) << "position " << p;
  }
}

TEST(MeshStart, ASplitThatDoesNotFitEndsEveryRankWithOneMessage) {
  test::MpiJob job(2, {"run", "--mesh", "--split", "2,2", "-n", "5"});
  expect_ended_cleanly(job, 2);
  const std::string err = job.err();
  EXPECT_THAT(err, HasSubstr("--split covers 4 layers but the model has 5"));
  EXPECT_EQ(err.find("--split covers"), err.rfind("--split covers")) << "only rank 0 reports it\n" << err;
}

// The port rank 0 listens on, from its log line.
int port_of(test::MpiJob& job) {
  if (!job.wait_for_err("listening on http://", 60)) return 0;
  std::smatch m;
  const std::string err = job.err();
  return std::regex_search(err, m, std::regex("listening on http://127\\.0\\.0\\.1:(\\d+)/"))
             ? std::stoi(m[1])
             : 0;
}

std::string chatml(const std::string& user) {
  return "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n";
}

TEST(MeshServe, AnswersAChatRequestAsTheReference) {
  test::MpiJob job(2, {"serve", "--mesh", "--port", "0", "--parallel", "2", "-c", "256"});
  const int port = port_of(job);
  ASSERT_GT(port, 0) << job.err();
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60);
  const std::string user = "Tell me a story about a cat.";
  const json body = {
      {"messages", {{{"role", "user"}, {"content", user}}}}, {"temperature", 0}, {"max_tokens", 30}};
  auto res = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  ASSERT_EQ(res->status, 200) << res->body;
  auto file = gguf::GgufFile::open(test::stories260k_path());
  const auto tok = tokenizer::Tokenizer::from_gguf(*file);
  const std::vector<int32_t> prompt = tok->encode(chatml(user), true);
  const json r = json::parse(res->body);
  EXPECT_EQ(r["choices"][0]["message"]["content"],
            test::text_of(*tok, test::reference_greedy(*file, prompt, 30, tok.get()), true));
  EXPECT_EQ(r["usage"]["prompt_tokens"], prompt.size());
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200) << health->body;
  EXPECT_THAT(job.err(), HasSubstr("on 2 pipeline stages: 2 slots x 256 positions"));
  // Ctrl-C on mpirun ends every rank.
  kill(job.pid(), SIGINT);
  const std::optional<int> status = job.wait(30);
  EXPECT_TRUE(status) << "the job did not end within 30 s of SIGINT\n" << job.err();
  EXPECT_TRUE(job.alive().empty());
}

// --- Faults ---

// A long generation (1900 tokens) that is still running when the fault comes.
std::vector<std::string> long_run() {
  return {"run", "--mesh", "--temp", "0", "-n", "1900", "-c", "2048", "--no-echo"};
}

// Seconds from now until stderr names `who` with `what`; -1 if not within 10 s.
double seconds_until_named(test::MpiJob& job, const std::string& text) {
  const auto t0 = Clock::now();
  const double seconds = job.wait_for_err(text, 10) ? since(t0) : -1;
  std::printf("'%s' after %.2f s\n", text.c_str(), seconds);  // docs/mesh.md quotes these
  return seconds;
}

// Three stages generating; `signal` to rank `rank` once text comes: within 5 s stderr names its stage for
// `why`, and the job ends with a non-zero status and no process left (a stopped one included).
void expect_fault_named(int rank, int signal, const Matcher<std::string>& why,
                        const std::vector<std::string>& mpirun_flags = {}) {
  test::MpiJob job(3, long_run(), mpirun_flags);
  const std::map<int, pid_t> ranks = job.ranks();
  ASSERT_EQ(ranks.size(), 3u) << job.err();
  ASSERT_TRUE(job.wait_for_err("stages ready", 60)) << job.err();
  ASSERT_TRUE(job.wait_for_out(" ", 30)) << "no text generated\n" << job.err();
  kill(ranks.at(rank), signal);
  const std::string r = std::to_string(rank);
  const double detected = seconds_until_named(job, "mesh: stage " + r + " (rank " + r + " on ");
  EXPECT_GE(detected, 0) << job.err();
  EXPECT_LT(detected, 5) << job.err();
  EXPECT_THAT(job.err(), why);
  const auto named = Clock::now();
  const std::optional<int> status = job.wait(10);
  ASSERT_TRUE(status) << "the job did not end within 10 s of the fault\n" << job.err();
  std::printf("mpirun ended %.2f s later\n", since(named));
  EXPECT_NE(*status, 0);
  EXPECT_TRUE(job.alive().empty()) << "a rank is left";
}

// Named by the probe that mpirun's SIGCONT starts, or, where mpirun itself is slow to see the death (a
// machine loaded far past its cores), by the heartbeats.
Matcher<std::string> named_as_dead() {
  return AnyOf(HasSubstr("is gone: it did not answer "), HasSubstr("stopped answering"));
}

TEST(MeshFault, AKilledRankIsNamedWithin5sAndTheJobEnds) {
  expect_fault_named(2, SIGKILL, named_as_dead());
}

// mpirun's SIGTERM to rank 0 comes a second after its SIGCONT; on a loaded machine the probe may not have
// ended by then. A probe made longer than that second shows that the SIGTERM ends it with the rank named
// (without, rank 0 died of the SIGTERM first and nobody named it).
TEST(MeshFault, MpirunsSigtermEndsTheProbeWithTheKilledRankNamed) {
  expect_fault_named(2, SIGKILL, named_as_dead(), {"-x", "WGLLM_MESH_PROBE_S=30"});
}

TEST(MeshFault, AStoppedRankIsNamedWithin5sAndTheJobEnds) {
  expect_fault_named(1, SIGSTOP, HasSubstr("stopped answering"));
}

// Rank 0 stopped: the other ranks notice the silence and end the job.
TEST(MeshFault, AStoppedRankZeroIsNamedAndTheJobEnds) {
  test::MpiJob job(2, long_run());
  const std::map<int, pid_t> ranks = job.ranks();
  ASSERT_EQ(ranks.size(), 2u) << job.err();
  ASSERT_TRUE(job.wait_for_err("stages ready", 60)) << job.err();
  kill(ranks.at(0), SIGSTOP);
  const double detected = seconds_until_named(job, "mesh: stage 0 (rank 0 on ");
  EXPECT_GE(detected, 0) << job.err();
  EXPECT_LT(detected, 5) << job.err();
  const std::optional<int> status = job.wait(10);
  ASSERT_TRUE(status) << job.err();
  EXPECT_NE(*status, 0);
  EXPECT_TRUE(job.alive().empty());
}

// A streaming request in flight when rank 1 dies ends with an error event naming the stage, before rank 0
// ends; then the job ends non-zero.
TEST(MeshFault, ServerAnswersItsRunningRequestWithAnErrorFirst) {
  test::MpiJob job(2, {"serve", "--mesh", "--port", "0", "-c", "2048"});
  const std::map<int, pid_t> ranks = job.ranks();
  ASSERT_EQ(ranks.size(), 2u) << job.err();
  const int port = port_of(job);
  ASSERT_GT(port, 0) << job.err();
  std::mutex mutex;
  std::string received;
  std::atomic<bool> got_text{false}, finished{false};
  std::thread client([&] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30);
    const json body = {
        {"prompt", "Once upon a time"}, {"max_tokens", 1900}, {"temperature", 0}, {"stream", true}};
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      std::lock_guard lock(mutex);
      received.append(data, n);
      got_text = true;
      return true;
    };
    c.send(req);
    finished = true;
  });
  const auto t0 = Clock::now();
  while (!got_text && since(t0) < 30) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(got_text) << job.err();
  kill(ranks.at(1), SIGKILL);
  const auto killed = Clock::now();
  while (!finished && since(killed) < 10) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(finished) << "the response did not end within 10 s of the fault";
  std::printf("the response ended %.2f s after the kill\n", since(killed));
  EXPECT_LT(since(killed), 5);
  const std::optional<int> status = job.wait(10);
  client.join();
  {
    std::lock_guard lock(mutex);
    EXPECT_THAT(received, HasSubstr("\"error\""));
    EXPECT_THAT(received, HasSubstr("stage 1 (rank 1 on "));
  }
  ASSERT_TRUE(status) << job.err();
  EXPECT_NE(*status, 0);
  EXPECT_TRUE(job.alive().empty());
}

// mpirun --mca orte_abort_on_non_zero_status 0: rank 0's server outlives a dead rank, reports degraded on
// /health before any request fails, and answers requests with 503 (Service Unavailable) naming the lost
// stage; stopping it ends the job with a non-zero status.
TEST(MeshFault, DegradedServerStaysUpAndReportsIt) {
  test::MpiJob job(2, {"serve", "--mesh", "--port", "0"}, {"--mca", "orte_abort_on_non_zero_status", "0"});
  const std::map<int, pid_t> ranks = job.ranks();
  ASSERT_EQ(ranks.size(), 2u) << job.err();
  const int port = port_of(job);
  ASSERT_GT(port, 0) << job.err();
  kill(ranks.at(1), SIGKILL);
  const double detected = seconds_until_named(job, "mesh: stage 1 (rank 1 on ");
  EXPECT_GE(detected, 0) << job.err();
  EXPECT_LT(detected, 5) << job.err();
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(30);
  // The server notices between requests (it asks its generator a few times a second).
  auto health = c.Get("/health");
  for (const auto t0 = Clock::now(); health && health->status == 200 && since(t0) < 5;
       health = c.Get("/health"))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(health) << "the server is gone\n" << job.err();
  EXPECT_EQ(health->status, 503) << health->body;
  const json h = json::parse(health->body);
  EXPECT_EQ(h["status"], "degraded") << health->body;
  EXPECT_THAT(h["reason"].get<std::string>(), HasSubstr("the mesh lost a stage: stage 1 (rank 1 on "));
  const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 10}};
  auto res = c.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res) << "the server is gone\n" << job.err();
  EXPECT_EQ(res->status, 503) << res->body;
  const json error = json::parse(res->body)["error"];
  EXPECT_EQ(error["type"], "server_error") << res->body;
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("the mesh lost a stage: stage 1 (rank 1 on "));
  health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503) << health->body;
  EXPECT_FALSE(job.status()) << "rank 0 ended\n" << job.err();
  kill(ranks.at(0), SIGTERM);
  const std::optional<int> status = job.wait(15);
  ASSERT_TRUE(status) << job.err();
  EXPECT_NE(*status, 0);
  EXPECT_TRUE(job.alive().empty());
}

#else  // a build without MPI still has --devices, and says what --mesh needs

TEST(MeshStart, WithoutMpiMeshSaysSo) {
  const test::Process p = test::run_wgllm({"run", "--mesh", "-n", "5"});
  EXPECT_EQ(p.exit_code, 2) << p.err;
  EXPECT_THAT(p.err, HasSubstr("built without MPI"));
}

#endif  // WGLLM_MESH

}  // namespace
}  // namespace wgllm::mesh
