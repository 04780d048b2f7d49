// tokenizer.json files as the Hugging Face `tokenizers` library itself writes them, and its ids as
// the oracle: tests/oracle/tokenizers_oracle.cjs (run here with node) trains vocabularies, writes one
// tokenizer.json per model family's configuration (GPT-2, OPT, Qwen2, Llama-3, RoBERTa-style,
// Llama-2 legacy and Metaspace) and the library's ids for the evaluation texts and adversarial
// strings, with and without special tokens. llmq must give the same ids for every one.
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace llmq {
namespace {

namespace fs = std::filesystem;

std::string oracle_dir() { return std::string(LLMQ_SOURCE_DIR) + "/tests/oracle"; }

// "" when node and the pinned npm package are installed (.ci/run: npm install in tests/oracle).
std::string missing_oracle() {
  if (std::system("node --version > /dev/null 2>&1") != 0)
    return "needs node (Debian package nodejs) for the tokenizers oracle";
  if (!fs::exists(oracle_dir() + "/node_modules/tokenizers/package.json"))
    return "needs the npm package tokenizers in " + oracle_dir() + "/node_modules (run: npm install --omit=optional --ignore-scripts --prefix " +
           oracle_dir() + ")";
  return "";
}

// One oracle run serves every test: ctest runs each test in its own process, so the output is kept
// in the build tree (under a lock) and reused while the script and its inputs are unchanged.
class TokenizerOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!missing_oracle().empty()) return;
    dir_ = std::string(LLMQ_BINARY_DIR) + "/tokenizer-oracle";
    fs::create_directories(dir_);
    std::string texts = test::embedded_path("tinystories-valid-200k.txt");
    for (const char* shared : {"data/wikitext-2-raw-v1-test.txt", "data/tinystories/TinyStories-valid-prefix.txt"})
      if (test::missing_shared(shared).empty()) texts += " " + test::shared_path(shared);
    const std::string script = oracle_dir() + "/tokenizers_oracle.cjs";
    const std::string cmd = "node " + script + " " + dir_ + " " + test::embedded_path("tinystories-train-200k.txt") +
                            " " + texts + " > " + dir_ + "/oracle.log 2>&1";
    const std::string stamp = cmd + "\n" + test::read_bytes(script);
    const int lock = ::open((dir_ + "/.lock").c_str(), O_CREAT | O_RDWR, 0644);
    ::flock(lock, LOCK_EX);
    run_status_ = 0;
    if (test::read_bytes(dir_ + "/stamp") != stamp || !fs::exists(dir_ + "/expected.json")) {
      fs::remove(dir_ + "/stamp");
      run_status_ = std::system(cmd.c_str());
      if (run_status_ == 0) test::write_bytes(dir_ + "/stamp", stamp);
    }
    if (run_status_ == 0) expected_ = nlohmann::json::parse(test::read_bytes(dir_ + "/expected.json"));
    ::flock(lock, LOCK_UN);
    ::close(lock);
  }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  void SetUp() override {
    LLMQ_SKIP_IF_MISSING(missing_oracle());
    ASSERT_EQ(run_status_, 0) << "the tokenizers oracle failed: " << test::read_bytes(file("oracle.log"));
  }

  void ExpectSameIds(const std::string& flavour) {
    ASSERT_TRUE(expected_.contains(flavour)) << flavour;
    auto tok = Tokenizer::Open(file(flavour));
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    int checked = 0;
    for (const auto& e : expected_[flavour]) {
      const std::string text = e["text"].get<std::string>();
      const std::string shown = text.size() > 60 ? text.substr(0, 60) + "... (" + std::to_string(text.size()) + " bytes)" : text;
      auto ids = (*tok)->Encode(text);
      ASSERT_TRUE(ids.ok()) << ids.status().ToString();
      const auto want = e["ids"].get<std::vector<int32_t>>();
      EXPECT_EQ(*ids, want) << flavour << ": " << shown;
      if (*ids != want) {  // the first difference, to read instead of two long lists
        size_t k = 0;
        while (k < ids->size() && k < want.size() && (*ids)[k] == want[k]) ++k;
        ADD_FAILURE() << "first difference at id " << k << " of " << want.size();
      }
      auto with_special = (*tok)->EncodeWithSpecialTokens(text);
      ASSERT_TRUE(with_special.ok());
      EXPECT_EQ(*with_special, e["ids_with_special"].get<std::vector<int32_t>>()) << flavour << " (special tokens): " << shown;
      ++checked;
    }
    EXPECT_GT(checked, 30);
  }

  static std::string dir_;
  static int run_status_;
  static nlohmann::json expected_;
};

std::string TokenizerOracle::dir_;
int TokenizerOracle::run_status_ = -1;
nlohmann::json TokenizerOracle::expected_;

TEST_F(TokenizerOracle, Gpt2ByteLevel) { ExpectSameIds("gpt2"); }
TEST_F(TokenizerOracle, OptByteLevelWithEosAsBos) { ExpectSameIds("opt"); }
TEST_F(TokenizerOracle, Qwen2SplitRegexNfc) { ExpectSameIds("qwen2"); }
TEST_F(TokenizerOracle, Llama3SplitRegexIgnoreMerges) { ExpectSameIds("llama3"); }
TEST_F(TokenizerOracle, RobertaProcessingPrefixSpaceMissingBytes) { ExpectSameIds("roberta"); }
TEST_F(TokenizerOracle, Llama2LegacyNormalizer) { ExpectSameIds("llama2_legacy"); }
TEST_F(TokenizerOracle, Llama2MetaspaceFirst) { ExpectSameIds("llama2_metaspace"); }

// GGUF export of byte-level BPE models (docs/GGUF.md): a Qwen2 folder (q/k/v biases, llama.cpp arch
// qwen2, pre-tokenizer "qwen2") and Llama folders with Llama-3-style and GPT-2-style tokenizer.json
// (arch llama, "llama-bpe" / "gpt-2"), each with the library's tokenizer.json and random weights:
// llama.cpp's ids of every oracle text equal the library's, and its perplexity equals llmq's.
TEST_F(TokenizerOracle, GgufExportOfByteLevelBpeModelsRunsInLlamaCpp) {
  LLMQ_SKIP_IF_MISSING(test::missing_llamacpp_client());
  for (const auto& [flavour, arch] : std::vector<std::pair<std::string, std::string>>{
           {"qwen2", "Qwen2ForCausalLM"}, {"llama3", "LlamaForCausalLM"}, {"gpt2", "LlamaForCausalLM"}}) {
    SCOPED_TRACE(flavour);
    auto tok = Tokenizer::Open(file(flavour));
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    test::TempDir d;
    test::SyntheticModel sm;
    sm.architecture = arch;
    sm.vocab = int((*tok)->vocab_size());
    sm.dtype = DType::kF32;
    test::write_synthetic_model(d.file("m"), sm);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      if (fs::exists(file(flavour + "/" + f))) fs::copy_file(file(flavour + "/" + f), d.file("m/") + f);
    auto e = export_gguf(d.file("m"), d.file("m.gguf"));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->architecture, arch == "Qwen2ForCausalLM" ? "qwen2" : "llama");
    int checked = 0, differ = 0;
    for (const auto& ex : expected_[flavour]) {
      const std::string text = ex["text"].get<std::string>();
      test::write_bytes(d.file("t.txt"), text);
      test::run_llamacpp_client("tokenize " + d.file("m.gguf") + " " + d.file("t.txt") + " " + d.file("ids.bin") +
                                " special");
      const std::string b = test::read_bytes(d.file("ids.bin"));
      std::vector<int32_t> got(b.size() / 4);
      if (!got.empty()) std::memcpy(got.data(), b.data(), got.size() * 4);
      const auto want = ex["ids_with_special"].get<std::vector<int32_t>>();
      ++checked;
      // GPT-2 flavour: its user-added "Lily" (single_word) and "->" (rstrip) have flags GGUF cannot
      // hold; export warns, and only texts holding them may differ.
      const bool flagged = flavour == "gpt2" && (text.find("Lily") != std::string::npos || text.find("->") != std::string::npos);
      if (got != want) {
        ++differ;
        if (!flagged) ADD_FAILURE() << "llama.cpp's ids differ for " << (text.size() > 60 ? text.substr(0, 60) + "..." : text);
      }
    }
    EXPECT_GT(checked, 30);
    if (flavour == "gpt2") {
      ASSERT_EQ(e->warnings.size(), 1u);
      EXPECT_NE(e->warnings[0].find("Lily (single_word), -> (rstrip)"), std::string::npos) << e->warnings[0];
      EXPECT_LE(differ, 4);
    } else {
      EXPECT_TRUE(e->warnings.empty());
      EXPECT_EQ(differ, 0);
    }
    // Perplexity of the random model on the same ids through both.
    auto ids = (*tok)->EncodeWithSpecialTokens(test::read_bytes(test::embedded_path("tinystories-valid-200k.txt")).substr(0, 6000));
    ASSERT_TRUE(ids.ok());
    test::write_bytes(d.file("ids.bin"), std::string(reinterpret_cast<const char*>(ids->data()), ids->size() * 4));
    const auto j = nlohmann::json::parse(test::run_llamacpp_client("ppl " + d.file("m.gguf") + " " + d.file("ids.bin") + " 64 8"));
    const double ours = test::perplexity_of(d.file("m"), *ids, 64, 8);
    EXPECT_NEAR(j.value("perplexity", 0.0) / ours, 1.0, 1e-3) << "llama.cpp " << j.value("perplexity", 0.0) << " llmq " << ours;
  }
}

// The user story of the issue: an OPT folder (pre-LN, ReLU, biases, learned positions, tied head)
// with the library's byte-level tokenizer.json is evaluated with </s> in front and quantized with
// AWQ (its folded biases were once written twice).
TEST_F(TokenizerOracle, OptFolderWithByteLevelTokenizerEvaluatesAndQuantizes) {
  auto tok = Tokenizer::Open(file("opt"));
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  test::TempDir d;
  test::SyntheticModel sm;
  sm.architecture = "OPTForCausalLM";
  sm.tie_embeddings = true;
  sm.vocab = int((*tok)->vocab_size());
  test::write_synthetic_model(d.file("opt"), sm);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(file("opt/") + f, d.file("opt/") + f);
  auto ids = (*tok)->EncodeWithSpecialTokens(test::read_bytes(test::embedded_path("tinystories-valid-200k.txt")).substr(0, 4000));
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ((*ids)[0], 2);  // OPT's </s>
  auto model = Model::Load(d.file("opt"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  PerplexityOptions po;
  po.seq_len = 32;
  auto ppl = evaluate_perplexity(**model, *ids, po);
  ASSERT_TRUE(ppl.ok()) << ppl.status().ToString();
  EXPECT_TRUE(std::isfinite(ppl->perplexity));
  QuantizeOptions o;
  o.method = "awq";
  o.spec = test::quant_spec(4, 32);
  test::write_bytes(d.file("calib.txt"), test::read_bytes(test::embedded_path("tinystories-train-200k.txt")).substr(0, 20000));
  o.calibration.data = d.file("calib.txt");
  o.calibration.nsamples = 4;
  o.calibration.seq_len = 32;
  auto rep = quantize_checkpoint(d.file("opt"), d.file("q"), o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  auto q = Model::Load(d.file("q"));
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  auto qppl = evaluate_perplexity(**q, *ids, po);
  ASSERT_TRUE(qppl.ok());
  EXPECT_TRUE(std::isfinite(qppl->perplexity));
}

// The keys the library writes that change nothing are accepted; the ones that would change the
// ids are refused naming the key.
TEST_F(TokenizerOracle, RefusesWhatChangesTheResult) {
  const nlohmann::json base = nlohmann::json::parse(test::read_bytes(file("gpt2/tokenizer.json")));
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    const char* message;  // "" = accepted
  };
  const Case cases[] = {
      {"null prefix", [](auto& j) { j["model"]["continuing_subword_prefix"] = nullptr; }, ""},
      {"dropout 0", [](auto& j) { j["model"]["dropout"] = 0.0; }, ""},
      {"prefix ##", [](auto& j) { j["model"]["continuing_subword_prefix"] = "##"; }, "continuing_subword_prefix"},
      {"suffix </w>", [](auto& j) { j["model"]["end_of_word_suffix"] = "</w>"; }, "end_of_word_suffix"},
      {"dropout 0.1", [](auto& j) { j["model"]["dropout"] = 0.1; }, "dropout"},
      {"unknown post-processor", [](auto& j) { j["post_processor"] = {{"type", "Mystery"}}; }, "post-processor 'Mystery'"},
      {"template on sequence B", [](auto& j) {
         j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", {{{"Sequence", {{"id", "B"}, {"type_id", 0}}}}}},
                                {"special_tokens", nlohmann::json::object()}};
       }, "sequence B"},
  };
  for (const Case& c : cases) {
    test::TempDir d;
    nlohmann::json j = base;
    c.edit(j);
    test::write_bytes(d.file("tokenizer.json"), j.dump());
    auto tok = Tokenizer::Open(d.path());
    if (std::string(c.message).empty()) {
      EXPECT_TRUE(tok.ok()) << c.what << ": " << tok.status().ToString();
    } else {
      ASSERT_FALSE(tok.ok()) << c.what;
      EXPECT_NE(tok.status().message().find(c.message), std::string::npos) << tok.status().ToString();
      EXPECT_NE(tok.status().message().find("tokenizer.json"), std::string::npos) << tok.status().ToString();
    }
  }
}

}  // namespace
}  // namespace llmq
