#include "tokenizer/unicode.hpp"

#include <algorithm>
#include <array>
#include <map>

#include "tokenizer/unicode_tables.hpp"

namespace wgllm::tokenizer::unicode {

namespace {

constexpr char32_t kCodePoints = 0x110000;
constexpr int kBlockBits = 8;
constexpr char32_t kBlockSize = 1u << kBlockBits;

// The range tables expanded once into a two-stage lookup: a block index per 256 code points, and the
// distinct 256-byte blocks (most blocks repeat: unassigned planes, CJK, private use), about 50 KB.
class PropertyTable {
 public:
  PropertyTable() {
    std::vector<uint8_t> all(kCodePoints);  // [0x110000] the properties byte of each code point
    for (size_t i = 0; i < kCategoryRanges.size(); ++i) {
      const char32_t end = i + 1 < kCategoryRanges.size() ? kCategoryRanges[i + 1].start : kCodePoints;
      std::fill(all.begin() + kCategoryRanges[i].start, all.begin() + end,
                static_cast<uint8_t>(kCategoryRanges[i].category));
    }
    for (const CodePointRange& r : kWhiteSpaceRanges) {
      for (char32_t cp = r.first; cp <= r.last; ++cp) all[cp] |= kWhiteSpaceBit;
    }
    std::map<std::vector<uint8_t>, uint16_t> seen;
    for (char32_t b = 0; b < kCodePoints / kBlockSize; ++b) {
      std::vector<uint8_t> block(all.begin() + b * kBlockSize, all.begin() + (b + 1) * kBlockSize);
      auto [it, fresh] = seen.emplace(std::move(block), static_cast<uint16_t>(seen.size()));
      if (fresh) blocks_.insert(blocks_.end(), it->first.begin(), it->first.end());
      index_[b] = it->second;
    }
  }
  uint8_t operator()(char32_t cp) const {
    if (cp >= kCodePoints) return static_cast<uint8_t>(Category::Cn);
    return blocks_[static_cast<size_t>(index_[cp >> kBlockBits]) << kBlockBits | (cp & (kBlockSize - 1))];
  }

 private:
  std::array<uint16_t, kCodePoints / kBlockSize> index_;
  std::vector<uint8_t> blocks_;  // [distinct blocks * 256]
};

}  // namespace

uint8_t properties(char32_t cp) {
  static const PropertyTable table;
  return table(cp);
}

char32_t simple_fold(char32_t cp) {
  auto it = std::lower_bound(kCaseFolds.begin(), kCaseFolds.end(), cp,
                             [](const CaseFold& f, char32_t c) { return f.from < c; });
  return it != kCaseFolds.end() && it->from == cp ? it->to : cp;
}

std::vector<char32_t> case_variants(char32_t cp) {
  const char32_t folded = simple_fold(cp);
  std::vector<char32_t> out = {folded};
  for (const CaseFold& f : kCaseFolds) {
    if (f.to == folded) out.push_back(f.from);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<char32_t> case_variants_of_range(char32_t lo, char32_t hi) {
  // A code point with case variants is the source or the target of some folding.
  std::vector<char32_t> out;
  for (const CaseFold& f : kCaseFolds) {
    if ((f.from < lo || f.from > hi) && (f.to < lo || f.to > hi)) continue;
    for (char32_t v : case_variants(f.to)) {
      if (v < lo || v > hi) out.push_back(v);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string_view version() {
  return kUnicodeVersion;
}

}  // namespace wgllm::tokenizer::unicode
