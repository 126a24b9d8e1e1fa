#include "tokenizer/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <queue>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "tokenizer/byte_level.hpp"

namespace wgllm::tokenizer {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's visible space

std::string byte_token_text(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  return buf;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t m; (m = s.find(from, pos)) != std::string::npos; pos = m + from.size()) {
    out.append(s, pos, m - pos);
    out.append(to);
  }
  out.append(s, pos);
  s = std::move(out);
}

}  // namespace

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
  check_vocab(vocab_);
  const int32_t n = n_vocab();
  const bool spm = vocab_.model == Model::Spm;

  std::array<int32_t, 256> hex_byte, single_byte;
  hex_byte.fill(-1);
  single_byte.fill(-1);
  if (!spm) bpe_bytes_.resize(static_cast<size_t>(n));
  text_to_id_.reserve(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id) {
    const std::string& t = vocab_.tokens[id];
    const TokenType type = vocab_.types[id];
    if (type == TokenType::Control || type == TokenType::Unknown || type == TokenType::UserDefined) {
      special_by_length_.push_back(id);
    }
    if (spm) {
      if (type != TokenType::Control && type != TokenType::Unknown && type != TokenType::Byte) {
        text_to_id_.emplace(t, id);
      }
      // llama.cpp's byte fallback: the token spelled "<0xAB>" (upper case), else the one-byte token.
      if (auto b = byte_token_value(t); b && t == byte_token_text(*b)) hex_byte[*b] = id;
      if (t.size() == 1) single_byte[static_cast<uint8_t>(t[0])] = id;
    } else if (type == TokenType::Normal) {
      // A text outside the byte-level alphabet cannot come out of merging; it decodes as it is written.
      std::optional<std::string> bytes = byte_level::decode(t);
      if (bytes) {
        if (bytes->size() == 1) single_byte[static_cast<uint8_t>((*bytes)[0])] = id;
        text_to_id_.emplace(*bytes, id);
      }
      bpe_bytes_[id] = bytes ? std::move(*bytes) : t;
    }
  }
  for (int b = 0; b < 256; ++b) byte_to_id_[b] = hex_byte[b] >= 0 ? hex_byte[b] : single_byte[b];
  std::stable_sort(special_by_length_.begin(), special_by_length_.end(),
                   [&](int32_t a, int32_t b) { return vocab_.tokens[a].size() > vocab_.tokens[b].size(); });

  if (!spm) {
    pre_tokenizer_ = std::make_unique<PreTokenizer>(vocab_.pre_regexes);
    merges_ = MergeTable(vocab_.merges);
  }
}

Tokenizer::MergeTable::MergeTable(std::span<const Merge> merges) {
  size_t size = 2;
  while (size < 2 * merges.size()) size *= 2, --shift_;
  slots_.resize(size);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    const uint64_t k = key(m.left, m.right);
    size_t i = slot(k);
    while (slots_[i].key != kEmpty && slots_[i].key != k) i = (i + 1) & (size - 1);
    // A repeated pair keeps its first (highest-priority) rank.
    if (slots_[i].key == kEmpty) slots_[i] = {k, static_cast<int32_t>(rank), m.result};
  }
}

const Tokenizer::MergeTable::Entry* Tokenizer::MergeTable::find(int32_t left, int32_t right) const {
  const uint64_t k = key(left, right);
  for (size_t i = slot(k);; i = (i + 1) & (slots_.size() - 1)) {
    if (slots_[i].key == k) return &slots_[i];
    if (slots_[i].key == kEmpty) return nullptr;
  }
}

std::unique_ptr<Tokenizer> Tokenizer::from_file(const std::string& path) {
  if (path.ends_with(".json") || std::filesystem::is_directory(path)) return from_hf_json(path);
  return from_gguf(*gguf::GgufFile::open(path));
}

bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(vocab_.eog_ids.begin(), vocab_.eog_ids.end(), id);
}

int32_t Tokenizer::find(std::string_view text) const {
  auto it = text_to_id_.find(text);
  return it == text_to_id_.end() ? -1 : it->second;
}

// llama.cpp's tokenizer_st_partition: each special token, longest first, splits every raw fragment at each
// of its occurrences (except, for control tokens, occurrences that overlap a `plain` range).
std::vector<Tokenizer::Fragment> Tokenizer::split_special(std::string_view text, bool parse_special,
                                                          std::span<const Range> plain) const {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({text});
  // Whether text[begin, end) overlaps a plain range.
  auto in_plain = [&](size_t begin, size_t end) {
    auto r = std::partition_point(plain.begin(), plain.end(), [&](const Range& x) { return x.end <= begin; });
    return r != plain.end() && r->begin < end;
  };
  std::vector<Fragment> next;
  for (int32_t id : special_by_length_) {
    const bool user_defined = vocab_.types[id] == TokenType::UserDefined;
    if (!parse_special && !user_defined) continue;
    const std::string& special = vocab_.tokens[id];
    next.clear();
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      const size_t base = static_cast<size_t>(f.text.data() - text.data());
      size_t pos = 0;
      for (size_t from = 0, m; (m = f.text.find(special, from)) != std::string_view::npos;) {
        if (!user_defined && in_plain(base + m, base + m + special.size())) {
          from = m + 1;
          continue;
        }
        if (m > pos) next.push_back({f.text.substr(pos, m - pos)});
        next.push_back({{}, id});
        pos = from = m + special.size();
      }
      if (pos < f.text.size()) next.push_back({f.text.substr(pos)});
    }
    fragments.swap(next);
  }
  return fragments;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && vocab_.add_bos) out.push_back(vocab_.bos);
  // The start of the text counts as following a special token.
  encode_fragments(text, parse_special, {}, /*after_special=*/true, out);
  if (add_bos && vocab_.add_eos) out.push_back(vocab_.eos);
  return out;
}

std::vector<int32_t> Tokenizer::encode_prompt(std::string_view text, std::span<const Range> plain,
                                              bool continues) const {
  std::vector<int32_t> out;
  encode_fragments(text, /*parse_special=*/true, plain, /*after_special=*/!continues, out);
  return out;
}

void Tokenizer::encode_fragments(std::string_view text, bool parse_special, std::span<const Range> plain,
                                 bool after_special, std::vector<int32_t>& out) const {
  std::vector<std::string_view> pieces;
  for (const Fragment& f : split_special(text, parse_special, plain)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
      continue;
    }
    if (vocab_.model == Model::Bpe) {
      pieces.clear();
      pre_tokenizer_->split(f.text, pieces);
      for (std::string_view p : pieces) encode_bpe(p, out);
      continue;
    }
    std::string escaped;
    if (vocab_.add_space_prefix && after_special) escaped = ' ';
    escaped.append(f.text);
    replace_all(escaped, " ", kSpaceMark);
    encode_spm(escaped, out);
    after_special = false;
  }
}

void Tokenizer::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  struct Symbol {
    size_t start, size;  // bytes of `text`; size 0 once merged into its left neighbour
    int prev, next;      // neighbours in the list of live symbols, -1 at the ends
  };
  std::vector<Symbol> symbols;  // [characters of text]
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = std::min(utf8::sequence_length(static_cast<uint8_t>(text[pos])), text.size() - pos);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({pos, len, index - 1, pos + len == text.size() ? -1 : index + 1});
    pos += len;
  }

  struct Bigram {
    float score;
    int left, right;
    size_t size;  // bytes of the merged text, to tell a stale entry from a live one
  };
  // Highest score first; among equal scores the leftmost pair.
  const auto lower = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(lower)> queue(lower);
  const auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t size = symbols[left].size + symbols[right].size;
    const int32_t id = find(text.substr(symbols[left].start, size));
    if (id >= 0) queue.push({vocab_.scores[id], left, right, size});
  };

  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = symbols[b.left];
    Symbol& right = symbols[b.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != b.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    try_add(left.prev, b.left);
    try_add(b.left, left.next);
  }

  for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const std::string_view s = text.substr(symbols[i].start, symbols[i].size);
    if (const int32_t id = find(s); id >= 0) {
      out.push_back(id);
    } else {
      for (char c : s) encode_byte(static_cast<uint8_t>(c), out);
    }
  }
}

void Tokenizer::encode_bpe(std::string_view piece, std::vector<int32_t>& out) const {
  if (vocab_.ignore_merges || piece.size() == 1) {
    if (const int32_t id = find(piece); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  struct Symbol {
    int32_t id;      // the token it is so far; -1 for a byte without a token (never merges)
    int prev, next;  // neighbours in the list of live symbols, -1 at the ends
  };
  struct Pair {
    int32_t rank;
    int left;                   // symbol index; the right one is its `next`
    int32_t left_id, right_id;  // what the two symbols were, to tell a stale entry from a live one
    int32_t result;
  };
  // Reused between calls: a piece is mostly a word, and allocating for each was a tenth of the time.
  thread_local std::vector<Symbol> symbols;  // [bytes of the piece], one per byte to start with
  thread_local std::vector<Pair> heap;
  symbols.resize(piece.size());
  heap.clear();
  for (size_t i = 0; i < piece.size(); ++i) {
    const int index = static_cast<int>(i);
    symbols[i] = {byte_to_id_[static_cast<uint8_t>(piece[i])], index - 1,
                  i + 1 == piece.size() ? -1 : index + 1};
  }

  // Lowest rank first; among equal ranks (the same merge at several places) the leftmost.
  const auto later = [](const Pair& a, const Pair& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  const auto try_add = [&](int left) {
    if (left < 0) return;
    const int right = symbols[left].next;
    if (right < 0 || symbols[left].id < 0 || symbols[right].id < 0) return;
    if (const MergeTable::Entry* m = merges_.find(symbols[left].id, symbols[right].id)) {
      heap.push_back({m->rank, left, symbols[left].id, symbols[right].id, m->result});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) try_add(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Pair p = heap.back();
    heap.pop_back();
    Symbol& left = symbols[p.left];
    if (left.id != p.left_id || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.id != p.right_id) continue;
    // A symbol's span only grows and each token spells one byte string, so equal ids mean the same
    // symbols as when the pair was queued.
    left.id = p.result;
    right.id = -2;  // dead
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = p.left;
    try_add(left.prev);
    try_add(p.left);
  }

  for (int i = 0; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) {
      out.push_back(symbols[i].id);
    } else if (vocab_.unk >= 0) {
      // A byte without a token (some vocabularies lack bytes that never occur in UTF-8, or even control
      // characters) never merged: the unknown token stands for it, or, as Hugging Face and llama.cpp do
      // without one, it is left out.
      out.push_back(vocab_.unk);
    }
  }
}

void Tokenizer::encode_byte(uint8_t byte, std::vector<int32_t>& out) const {
  int32_t id = byte_to_id_[byte];
  if (id < 0) id = vocab_.unk;
  if (id < 0) {
    fail_input("cannot encode byte " + byte_token_text(byte) +
               ": the vocabulary has no byte token for it and no unknown token");
  }
  out.push_back(id);
}

std::string Tokenizer::piece(int32_t id, bool special) const {
  if (id < 0 || id >= n_vocab()) {
    fail_input("token id " + std::to_string(id) + " is out of range (the vocabulary has " +
               std::to_string(n_vocab()) + " tokens)");
  }
  const std::string& text = vocab_.tokens[id];
  switch (vocab_.types[id]) {
    case TokenType::Normal: {
      if (vocab_.model == Model::Bpe) return bpe_bytes_[id];
      std::string s = text;
      replace_all(s, kSpaceMark, " ");
      return s;
    }
    case TokenType::Byte:
      return std::string(1, static_cast<char>(*byte_token_value(text)));
    case TokenType::UserDefined:
      return text;
    case TokenType::Control:
    case TokenType::Unknown:
      return special ? text : std::string();
    case TokenType::Undefined:
    case TokenType::Unused:
      break;
  }
  return {};
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool special) const {
  std::string out;
  bool strip = vocab_.add_space_prefix;
  for (int32_t id : ids) {
    std::string p = piece(id, special);
    if (strip && !p.empty()) {
      if (p[0] == ' ') p.erase(0, 1);
      strip = false;
    }
    out += p;
  }
  return out;
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool strip_leading_space)
    : tokenizer_(tokenizer), strip_pending_(strip_leading_space && tokenizer.vocab().add_space_prefix) {}

std::string StreamDecoder::push(int32_t id) {
  std::string p = tokenizer_.piece(id);
  if (strip_pending_ && !p.empty()) {
    if (p[0] == ' ') p.erase(0, 1);
    strip_pending_ = false;
  }
  held_ += p;

  // Decoding from any position depends only on the bytes from there on, so emitting everything up to an
  // unfinished tail and decoding the tail again once more bytes arrive gives what a whole-text pass would.
  std::string out;
  const std::string_view bytes = held_;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const utf8::Decoded d = utf8::decode(bytes.substr(pos));
    if (d.status == utf8::Status::Incomplete) break;
    if (d.status == utf8::Status::Valid) {
      out.append(bytes.substr(pos, d.length));
    } else {
      utf8::append(out, utf8::kReplacement);
    }
    pos += d.length;
  }
  held_.erase(0, pos);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  if (!held_.empty()) utf8::append(out, utf8::kReplacement);
  held_.clear();
  return out;
}

}  // namespace wgllm::tokenizer
