// Hugging Face tokenizer.json (BPE): the SentencePiece flavour against the reference ids of
// ../shared/fixtures (the tokenizer.json is built here from the Llama-2 tokenizer.model the
// way Hugging Face's converter does), the byte-level flavour on a hand-checkable vocabulary,
// the pre-tokenizer regexes piece by piece, and bad files.
#include <gtest/gtest.h>
#include <llmq/llmq.h>
#include <sentencepiece_processor.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "text/hf_tokenizer.h"

namespace llmq {
namespace {

using json = nlohmann::json;
using test::TempDir;

// tokenizer.json of a SentencePiece BPE model, as transformers' LlamaConverter writes it
// (legacy layout): vocab = pieces, merges = every split (a, b) of a piece into two pieces,
// ordered by the merged piece's score (then by the ids of a and b), normalizer
// Prepend("▁") + Replace(" " -> "▁"), no pre-tokenizer, byte fallback.
json tokenizer_json_from_sentencepiece(const std::string& model_path) {
  sentencepiece::SentencePieceProcessor sp;
  EXPECT_TRUE(sp.Load(model_path).ok()) << model_path;
  json vocab = json::object();
  std::map<std::string, int> id_of;
  for (int i = 0; i < sp.GetPieceSize(); ++i) {
    vocab[sp.IdToPiece(i)] = i;
    id_of[sp.IdToPiece(i)] = i;
  }
  struct Merge {
    float score;
    int l, r;
    std::string a, b;
  };
  std::vector<Merge> merges;
  for (int i = 0; i < sp.GetPieceSize(); ++i) {
    if (!sp.IsUnknown(i) && (sp.IsControl(i) || sp.IsByte(i))) continue;
    const std::string piece = sp.IdToPiece(i);
    // Split at code point boundaries only.
    for (size_t k = 1; k < piece.size(); ++k) {
      if ((static_cast<unsigned char>(piece[k]) & 0xC0) == 0x80) continue;
      auto a = id_of.find(piece.substr(0, k)), b = id_of.find(piece.substr(k));
      if (a != id_of.end() && b != id_of.end()) merges.push_back({sp.GetScore(i), a->second, b->second, a->first, b->first});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& x, const Merge& y) {
    if (x.score != y.score) return x.score > y.score;
    return std::make_pair(x.l, x.r) < std::make_pair(y.l, y.r);
  });
  json m = json::array();
  for (const auto& mg : merges) m.push_back(mg.a + " " + mg.b);
  json added = json::array();
  for (int i : {sp.unk_id(), sp.bos_id(), sp.eos_id()})
    added.push_back({{"id", i}, {"content", sp.IdToPiece(i)}, {"special", true}, {"normalized", false}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
          {"pre_tokenizer", nullptr},
          {"model",
           {{"type", "BPE"}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true}, {"vocab", vocab}, {"merges", m}}}};
}

TEST(TokenizerJson, SentencePieceFlavourMatchesReferenceIds) {
  LLMQ_NEED_SHARED("fixtures/tokenizer-ids.json");
  LLMQ_NEED_SHARED("tokenizers/llama2/tokenizer.model");
  LLMQ_NEED_SHARED("data/wikitext-2-raw-v1-test.txt");
  LLMQ_NEED_SHARED("data/tinystories/TinyStories-valid-prefix.txt");
  const std::string fixture_path = test::shared_path("fixtures/tokenizer-ids.json");
  std::ifstream in(fixture_path);
  const json fx = json::parse(in)["tokenizers"]["llama2"];
  TempDir dir;
  std::ofstream(dir.file("tokenizer.json")) << tokenizer_json_from_sentencepiece(test::shared_path(fx["file"].get<std::string>())).dump();
  std::ofstream(dir.file("tokenizer_config.json")) << R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}})";
  auto tok = Tokenizer::Open(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  test::expect_matches_tokenizer_fixture(**tok, "llama2", true);
}

TEST(TokenizerJson, PreTokenizerRegexes) {
  using internal::split_pretokens_for_test;
  using V = std::vector<std::string>;
  EXPECT_EQ(split_pretokens_for_test("Hello world's  test 123!!", "gpt2"),
            (V{"Hello", " world", "'s", " ", " test", " 123", "!!"}));
  EXPECT_EQ(split_pretokens_for_test("I'LL go\n\n  end  ", "gpt2"), (V{"I", "'", "LL", " go", "\n\n ", " end", "  "}));
  EXPECT_EQ(split_pretokens_for_test("Hello world's  test 12345!!\n\n x", "llama3"),
            (V{"Hello", " world", "'s", " ", " test", " ", "123", "45", "!!\n\n", " x"}));
  EXPECT_EQ(split_pretokens_for_test("I'LL (go)\n \n\tx", "llama3"), (V{"I", "'LL", " (", "go", ")\n", " \n", "\tx"}));
  EXPECT_EQ(split_pretokens_for_test("v2024 naïve 東京", "qwen2"), (V{"v", "2", "0", "2", "4", " naïve", " 東京"}));
}

// A byte-level vocabulary small enough to check by hand: the 256 byte symbols plus
// "Ġt", "he", "Ġthe", "Ġc", "at", "Ġcat".
TEST(TokenizerJson, ByteLevelFlavourByHand) {
  json vocab = json::object();
  // GPT-2 byte map: printable ASCII maps to itself, the space (0x20) to U+0120 "Ġ".
  std::vector<std::string> sym(256);
  {
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool direct = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const int cp = direct ? b : next++;
      std::string u;
      if (cp < 0x80) u = std::string(1, char(cp));
      else u = {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
      sym[size_t(b)] = u;
      vocab[u] = b;
    }
  }
  const std::string G = sym[' '];
  int id = 256;
  for (const std::string& t : {G + "t", std::string("he"), G + "the", G + "c", std::string("at"), G + "cat"}) vocab[t] = id++;
  json merges = {G + " t", "h e", G + "t he", G + " c", "a t", G + "c at"};
  json tj = {{"added_tokens", {{{"id", 262}, {"content", "<|endoftext|>"}, {"special", true}}}},
             {"normalizer", nullptr},
             {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
             {"decoder", {{"type", "ByteLevel"}}},
             {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  TempDir dir;
  std::ofstream(dir.file("tokenizer.json")) << tj.dump();
  auto tok = Tokenizer::Open(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  // "the cat" -> "t" "he" (no merge "t he" without Ġ), "Ġcat"; then the special token; then " é".
  auto ids = (*tok)->Encode("the cat<|endoftext|> \xC3\xA9");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{'t', 257, 261, 262, ' ', 0xC3, 0xA9}));
  EXPECT_EQ(*(*tok)->Decode(*ids), "the cat \xC3\xA9");  // special tokens are skipped
  EXPECT_EQ((*tok)->TokenText(261), " cat");
  EXPECT_EQ((*tok)->eos_id(), 262);
}

TEST(TokenizerJson, BadFilesAreClearErrors) {
  TempDir dir;
  test::write_bytes(dir.file("tokenizer.json"), "{ not json");
  auto a = Tokenizer::Open(dir.path());
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("tokenizer.json"), std::string::npos);
  test::write_bytes(dir.file("tokenizer.json"), R"({"model": {"type": "Unigram", "vocab": []}})");
  auto b = Tokenizer::Open(dir.path());
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kNotSupported);
  EXPECT_NE(b.status().message().find("Unigram"), std::string::npos);
  test::write_bytes(dir.file("tokenizer.json"),
                    R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}})");
  auto c = Tokenizer::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("regex"), std::string::npos);
}

}  // namespace
}  // namespace llmq
