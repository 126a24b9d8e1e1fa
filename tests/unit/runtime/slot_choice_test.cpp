// runtime::choose_slot, the rule of Generator::start (runtime/slot_choice.hpp): the free slot sharing the
// longest prefix when that prefix is at least half of the prompt or of the slot's cache, else the least
// recently used free slot (unused first, then the first of equals); the prompt's last token is never
// reused; nothing when every slot is busy.
#include "runtime/slot_choice.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "core/error.hpp"

namespace wgllm::runtime {
namespace {

using Tokens = std::vector<int32_t>;

SlotCandidate slot(const Tokens& cached, uint64_t last_used, bool free = true) {
  return {free, cached, last_used};
}

TEST(SlotChoice, UnusedSlotsTakeTheFirstAndReuseNothing) {
  const Tokens none;
  const std::vector<SlotCandidate> slots = {slot(none, 0), slot(none, 0), slot(none, 0)};
  const auto c = choose_slot(slots, Tokens{1, 5, 6});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 0u);
  EXPECT_EQ(c->reused, 0u);
}

TEST(SlotChoice, WithoutASharedPrefixTheLeastRecentlyUsedFreeSlotIsTaken) {
  const Tokens a = {7, 8, 9}, b = {4, 4}, c = {5};
  const std::vector<SlotCandidate> slots = {slot(a, 6), slot(b, 2), slot(c, 4)};
  const auto choice = choose_slot(slots, Tokens{1, 2, 3});
  ASSERT_TRUE(choice);
  EXPECT_EQ(choice->slot, 1u);
  EXPECT_EQ(choice->reused, 0u);
}

// A follow-up turn: slot 2 holds the conversation so far, which is 6 of the prompt's 9 tokens.
TEST(SlotChoice, ALongSharedPrefixTakesItsSlotOverUnusedOnes) {
  const Tokens none, other = {1, 9, 9, 9}, conversation = {1, 2, 3, 4, 5, 6};
  const std::vector<SlotCandidate> slots = {slot(none, 0), slot(other, 3), slot(conversation, 5)};
  const auto c = choose_slot(slots, Tokens{1, 2, 3, 4, 5, 6, 7, 8, 9});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 2u);
  EXPECT_EQ(c->reused, 6u);
}

// 2 shared tokens: less than half of the 10-token prompt, but half of the slot's 4 cached ones.
TEST(SlotChoice, HalfOfTheSlotsCacheCountsToo) {
  const Tokens none, short_cache = {1, 2, 8, 8};
  const std::vector<SlotCandidate> slots = {slot(none, 0), slot(short_cache, 4)};
  const auto c = choose_slot(slots, Tokens{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 1u);
  EXPECT_EQ(c->reused, 2u);
}

TEST(SlotChoice, TheLongestOfTheCountingPrefixesWins) {
  const Tokens four = {1, 2, 3, 4}, six = {1, 2, 3, 4, 5, 6, 0, 0};
  const std::vector<SlotCandidate> slots = {slot(four, 1), slot(six, 9)};
  const auto c = choose_slot(slots, Tokens{1, 2, 3, 4, 5, 6, 7, 8});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 1u);
  EXPECT_EQ(c->reused, 6u);
}

// The prompt repeated whole: its last token still runs, so all but it is reused.
TEST(SlotChoice, ThePromptsLastTokenIsNeverReused) {
  const Tokens cached = {1, 2, 3, 4, 5, 6};
  const std::vector<SlotCandidate> slots = {slot(cached, 1)};
  const auto c = choose_slot(slots, Tokens{1, 2, 3, 4});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 0u);
  EXPECT_EQ(c->reused, 3u);
}

// A conversation of 10 tokens sharing only BOS with a prompt of 5: 1 is below half of either, so the
// unused slot is taken and the conversation's cache is kept.
TEST(SlotChoice, AShortSharedPrefixDoesNotEvictAConversation) {
  const Tokens none, conversation = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const std::vector<SlotCandidate> slots = {slot(conversation, 3), slot(none, 0)};
  const auto c = choose_slot(slots, Tokens{1, 20, 21, 22, 23});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 1u);
  EXPECT_EQ(c->reused, 0u);
}

// When the least recently used slot is taken for lack of a real share, the short prefix it does share is
// still reused (its cache past that prefix is what gets overwritten).
TEST(SlotChoice, AShortPrefixOfTheSlotTakenIsStillReused) {
  const Tokens older = {1, 2, 30, 31, 32, 33, 34, 35}, newer = {1, 40, 41, 42, 43, 44, 45, 46};
  const std::vector<SlotCandidate> slots = {slot(newer, 8), slot(older, 5)};
  const auto c = choose_slot(slots, Tokens{1, 2, 3, 4, 5, 6, 7});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 1u);
  EXPECT_EQ(c->reused, 2u);
}

TEST(SlotChoice, AllSlotsBusyGiveNothing) {
  const Tokens same = {1, 2, 3, 4}, none;
  const std::vector<SlotCandidate> slots = {slot(same, 1, false), slot(none, 0, false)};
  EXPECT_FALSE(choose_slot(slots, Tokens{1, 2, 3, 4, 5}));
  EXPECT_FALSE(choose_slot({}, Tokens{1}));
}

TEST(SlotChoice, ABusySlotIsSkippedForAFreeOne) {
  const Tokens same = {1, 2, 3, 4}, none;
  const std::vector<SlotCandidate> slots = {slot(same, 1, false), slot(none, 0)};
  const auto c = choose_slot(slots, Tokens{1, 2, 3, 4, 5});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 1u);
  EXPECT_EQ(c->reused, 0u);
}

TEST(SlotChoice, AnEmptyPromptIsBadInput) {
  const Tokens none;
  const std::vector<SlotCandidate> slots = {slot(none, 0)};
  try {
    choose_slot(slots, {});
    FAIL() << "expected Error(BadInput)";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("no tokens"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace wgllm::runtime
