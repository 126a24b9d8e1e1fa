// StopMatcher against its definition: the text a client receives is the generated text cut before the
// first occurrence of any stop sequence, however the text is split into pushes, and no byte of a stop
// sequence is ever sent.
#include <gtest/gtest.h>

#include <random>

#include "server/stop_matcher.hpp"
#include "support/test_support.hpp"

namespace wgllm::server {
namespace {

// The definition, on the whole text at once.
std::pair<std::string, bool> cut(const std::string& text, const std::vector<std::string>& stops) {
  size_t first = std::string::npos;
  for (const std::string& s : stops)
    if (!s.empty()) first = std::min(first, text.find(s));
  return first == std::string::npos ? std::pair{text, false} : std::pair{text.substr(0, first), true};
}

struct Streamed {
  std::string sent;
  bool stopped = false;
};

Streamed stream(const std::vector<std::string>& pieces, const std::vector<std::string>& stops) {
  StopMatcher m(stops);
  Streamed out;
  for (const std::string& p : pieces) {
    StopMatcher::Result r = m.push(p);
    out.sent += r.text;
    if (r.stopped) {
      out.stopped = true;
      return out;
    }
  }
  StopMatcher::Result r = m.flush();
  out.sent += r.text;
  out.stopped = r.stopped;
  return out;
}

TEST(StopMatcher, HoldsBackAPossibleStartUntilItCannotMatch) {
  StopMatcher m({"</end>"});
  EXPECT_EQ(m.push("hello </").text, "hello ");
  StopMatcher::Result r = m.push("em");  // "</em" is not a prefix of "</end>"
  EXPECT_EQ(r.text, "</em");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(m.push("x</e").text, "x");
  r = m.push("nd> more");
  EXPECT_EQ(r.text, "");
  EXPECT_TRUE(r.stopped);
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"world", "lo w"});
  StopMatcher::Result r = m.push("hello world");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "hel");
}

TEST(StopMatcher, FlushReturnsTheHeldText) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("the end ST").text, "the end ");
  StopMatcher::Result r = m.flush();
  EXPECT_EQ(r.text, "ST");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(m.flush().text, "");
}

TEST(StopMatcher, AShorterStopWaitsForALongerOneThatBeganEarlier) {
  StopMatcher m({"\n", "a\n>"});
  StopMatcher::Result r = m.push(">a\n");  // "a\n>" may still begin at 'a', before the "\n"
  EXPECT_EQ(r.text, ">");
  EXPECT_FALSE(r.stopped);
  r = m.flush();  // it did not: the "\n" ends the text
  EXPECT_EQ(r.text, "a");
  EXPECT_TRUE(r.stopped);
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc").text, "abc");
  StopMatcher empty({""});  // an empty stop sequence matches nothing
  EXPECT_EQ(empty.push("abc").text, "abc");
}

TEST(StopMatcher, MultiByteCharactersAreNeverSplit) {
  // "é" is 2 bytes; the stop starts with the same character as the held text.
  StopMatcher m({"éclair"});
  EXPECT_EQ(m.push("café é").text, "café ");
  EXPECT_EQ(m.push("t").text, "ét");
}

TEST(StopMatcher, AnySplitGivesTheDefinitionsText) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng();
  const std::string alphabet = "ab\n<>/";
  for (int trial = 0; trial < 3000; ++trial) {
    std::uniform_int_distribution<int> len(0, 24), pick(0, int(alphabet.size()) - 1), n_stops(0, 3),
        slen(1, 4);
    std::string text;
    for (int i = len(rng); i > 0; --i) text += alphabet[pick(rng)];
    std::vector<std::string> stops(n_stops(rng));
    for (std::string& s : stops)
      for (int i = slen(rng); i > 0; --i) s += alphabet[pick(rng)];
    std::vector<std::string> pieces;
    for (size_t at = 0; at < text.size();) {
      size_t n = std::uniform_int_distribution<size_t>(0, 4)(rng);
      pieces.push_back(text.substr(at, n));
      at += n;
    }
    auto [expected, stopped] = cut(text, stops);
    Streamed got = stream(pieces, stops);
    std::string all;
    for (const std::string& s : stops) all += "[" + s + "]";
    ASSERT_EQ(got.sent, expected) << "text '" << text << "' stops " << all;
    ASSERT_EQ(got.stopped, stopped) << "text '" << text << "'";
  }
}

}  // namespace
}  // namespace wgllm::server
