// Shared helpers for the unit tests: paths to shipped test data, temporary files, seeded randomness.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace wgllm::test {

// Paths inside the repository (never ../shared: a user's clone has none).
std::string source_path(const std::string& relative);  // e.g. "models/stories260K.gguf"
std::string testdata_path(const std::string& relative);  // under testdata/
std::string read_file(const std::string& path);

// A fresh temporary directory removed at process exit.
std::string temp_dir();
std::string write_temp_file(const std::string& name, const std::vector<uint8_t>& bytes);

// The run's random seed: WGLLM_TEST_SEED if set, else fresh. Tests print it on failure through
// SCOPED_TRACE(seed_note()).
uint64_t test_seed();
std::string seed_note();
std::mt19937_64 rng(uint64_t salt = 0);

// ||a - b||_2 / ||b||_2 (CONTRACTS.md).
double relative_error(const std::vector<float>& a, const std::vector<double>& b);
double relative_error(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace wgllm::test
