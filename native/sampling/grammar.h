// The output grammar of one request, compiled by TypeScript (lib/grammar/)
// and enforced here at every sampling step. It is plain data on both sides:
// token-id sequences found by tokenizing separators and phrases *in context*
// (", " before a coordinate is "," "Ġ", never one id), the coordinate id
// range, the structural ids, and a few numbers. GrammarState turns it, plus
// the tokens chosen so far, into a TokenMask (ranges + ids, see token_mask.h)
// that a CPU or GPU sampler applies; nothing here calls back into JS.
//
// FIELD LIST — lib/grammar/types.ts (GrammarJson) mirrors it name for name:
//   mode                  "groups" (every task but keypoint) | "free" (coordinate runs in free
//                         text; the former keypoint grammar) | "keypoint_json" (keypoint JSON)
//   coord_first           id of "<0>"; "<k>" is coord_first + k
//   coord_count           1000
//   stop_ids              ids that end the output (<|im_end|>)
//   ref_start, ref_end, box_start, box_end   the four structural ids
//   none_tokens           tokens of "None" between box_start and box_end ([] = not allowed)
//   item_separators       token sequences between items (",", ", ")
//   group_separators      token sequences between groups (", ")
//   arity                 "point" (2) | "box" (4) | "polygon" (even, >= 6)
//   max_item_coords       polygon coordinate cap (0 = none)
//   phrase_mode           "fixed" (phrases only) | "free" (any text but free_text_banned)
//   phrases               fixed mode: each phrase's tokens in context (non-empty)
//   free_text_banned      [begin, end) id ranges free text may not use (structural,
//                         special, padding); coordinates and ref_end are handled here
//   max_phrase_tokens     free phrase length cap (0 = none)
//   max_predictions       cap on items in groups mode (0 = none; free mode: not enforced)
//   forbid_duplicate_boxes  no exact repeat of a box/point within one phrase
//   runs                  free mode: coordinate runs (see CoordinateRun)
//   coords_only_in_runs   free mode: coordinates nowhere but inside runs
//   json_vocab            keypoint_json mode: (id, decoded text) of every candidate token (text
//                         of JSON-safe characters only; see grammar_keypoint.h); empty otherwise.
//                         In JSON one string, "ID:TEXT|" per token (grammar_json.cpp says why)
//
// Groups mode accepts exactly
//   output := [group (GSEP group)*] STOP
//   group  := REF_START phrase REF_END BOX_START (NONE | item (ISEP item)*) BOX_END
// with items of the arity above, x1 >= x0 and y1 >= y0 inside a box, at most
// max_predictions items, and, when the caller says how many tokens are left,
// only tokens after which the output can still close (so even a max_new_tokens
// cut ends at a group boundary with STOP when the budget allows STOP at all).
// Free mode (the keypoint grammar before keypoint_json) is free text without special ids, plus "runs":
// after a trigger (`"bbox": "`), exactly N coordinates with their separator,
// box-ordered when asked; with coords_only_in_runs no coordinate elsewhere.
// Keypoint JSON mode is the REXOMNI.md keypoint schema as a character-level
// automaton over json_vocab's texts, coordinates as tokens (grammar_keypoint.h):
// any candidate token whose whole text the automaton can read, a coordinate
// where the schema has one (box-ordered in "bbox"), STOP once the top-level
// object (and optional fence) closed; at most max_predictions instances; the
// same budget rule as groups mode.
// grammar_json.h reads the JSON form lib/grammar writes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "rex/status.h"
#include "sampling/token_mask.h"

namespace rex {

enum class GrammarMode { kGroups, kFree, kKeypointJson };
enum class ItemArity { kPoint, kBox, kPolygon };
enum class PhraseMode { kFixed, kFree };

// Free mode: after any trigger sequence, `coords` coordinates follow, each
// preceded by `separator` (e.g. " " -> [220]); `ordered_box` enforces x1 >= x0,
// y1 >= y0 for 4 coordinates; an `optional` run may instead go on as free text
// if its first token is not the start of the run.
struct CoordinateRun {
  std::vector<std::vector<int32_t>> triggers;
  std::vector<int32_t> separator;
  int coords = 2;
  bool ordered_box = false;
  bool optional = false;
};

struct OutputGrammar {
  GrammarMode mode = GrammarMode::kGroups;
  int32_t coord_first = 0;
  int32_t coord_count = 1000;
  std::vector<int32_t> stop_ids;
  int32_t ref_start = -1, ref_end = -1, box_start = -1, box_end = -1;
  std::vector<int32_t> none_tokens;
  std::vector<std::vector<int32_t>> item_separators;
  std::vector<std::vector<int32_t>> group_separators;
  ItemArity arity = ItemArity::kBox;
  int max_item_coords = 0;
  PhraseMode phrase_mode = PhraseMode::kFixed;
  std::vector<std::vector<int32_t>> phrases;
  std::vector<IdRange> free_text_banned;
  int max_phrase_tokens = 0;
  int max_predictions = 0;
  bool forbid_duplicate_boxes = false;
  std::vector<CoordinateRun> runs;
  bool coords_only_in_runs = false;
  std::vector<std::pair<int32_t, std::string>> json_vocab;
};

// kInvalidArgument naming the field, what was expected and what was given.
Status validate_grammar(const OutputGrammar& g, int vocab);

// A token trie (phrases, separators, "None"). Node 0 is the root.
struct TokenTrie {
  struct Node {
    std::vector<std::pair<int32_t, int32_t>> children;  // (token, node), sorted by token
    bool terminal = false;
    int to_terminal = 0;   // fewest tokens from here to a terminal node
    int32_t category = -1; // terminal: index of the sequence (first one inserted)
  };
  std::vector<Node> nodes{Node{}};
  void insert(const std::vector<int32_t>& seq, int32_t category);
  void finalize();                                  // computes to_terminal
  int32_t child(int32_t node, int32_t token) const; // -1 if none
};

struct CompiledGrammar;

class GrammarState {
 public:
  static Result<GrammarState> create(const OutputGrammar& g, int vocab);

  // The tokens allowed next. tokens_left (< 0: unknown) is how many tokens the
  // request may still emit, this one included; when it is small only tokens
  // after which STOP stays reachable in time are allowed. Never empty.
  const TokenMask& allowed(int tokens_left = -1);
  // Moves past `id`; kInvalidArgument (state unchanged) if the grammar forbids it.
  Status advance(int32_t id);

  bool done() const;              // STOP was accepted
  bool at_group_boundary() const; // STOP would be accepted now
  int predictions() const { return predictions_; }  // items; free mode: ordered box runs; keypoint_json: instances

  // Fewest tokens (STOP included) that close the output from here.
  int cost_to_finish() const;

 private:
  enum class Where {
    kStart,        // before the first group: REF_START or STOP
    kAfterGroup,   // after BOX_END: group separator or STOP
    kGroupSep,     // inside a group separator (trie node_); REF_START once complete
    kPhrase,       // fixed phrase (trie node_)
    kFreePhrase,   // free phrase, phrase_len_ tokens so far
    kAfterPhrase,  // after REF_END: BOX_START only
    kBoxOpen,      // after BOX_START: first coordinate or "None"
    kNone,         // inside "None" (trie node_)
    kItem,         // item_len_ coordinates of the current item so far
    kItemSep,      // inside an item separator (trie node_)
    kDone,         // after STOP
    kFreeText,     // free mode, outside a run
    kRun,          // free mode, inside run run_ at slot run_slot_
    kJson,         // keypoint_json mode, automaton state json_
  };

  std::shared_ptr<const CompiledGrammar> g_;
  int vocab_ = 0;
  Where where_ = Where::kStart;
  int32_t node_ = 0;
  int phrase_len_ = 0;
  std::vector<int32_t> phrase_tokens_;  // free phrase, for the duplicate key
  int32_t category_ = -1;              // current group's category
  int item_len_ = 0;
  int32_t item_[4] = {0, 0, 0, 0};     // bins of the current item (first 4)
  int predictions_ = 0;
  int run_ = -1, run_slot_ = 0;
  std::vector<int32_t> tail_;          // free mode: last tokens, for triggers
  std::map<std::vector<int32_t>, int32_t> free_categories_;
  std::unordered_map<uint64_t, std::vector<int16_t>> seen_;  // (category, prefix) -> last bins
  TokenMask mask_;
  int32_t json_ = 0;                   // keypoint_json: automaton state code
  std::vector<uint8_t> json_hit_;      // keypoint_json: per candidate token, allowed this step

  int cost_of(Where w, int32_t node, int n, int run) const;  // cost_to_finish of that state
  int remaining_coords(int k) const;
  int run_slots(int run) const;
  Where phrase_start() const;
  void add_item(int left);
  void add_free_text(int left, int run_at_slot0);
  int matching_run(int32_t next) const;  // run whose trigger `next` completes (longest), or -1
  void free_token(int32_t id);
  void begin_item(int32_t bin);
  void push_coord(int32_t bin);
  void finish_item();
  uint64_t dup_key() const;
  void add_json(int left);
  Status advance_json(int32_t id);
};

}  // namespace rex
