// Model folders, the llmq format and quantize_checkpoint on synthetic and real models.
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/checkpoint_writer.h"
#include "io/llmq_format.h"
#include "test_util.h"

namespace llmq {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

Status open_status(const std::string& folder) {
  auto c = Checkpoint::Open(folder);
  return c.ok() ? Status::Ok() : c.status();
}

TEST(ModelConfig, ParsesLlamaFamilies) {
  auto c = parse_model_config(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
      "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
      "vocab_size": 100, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})", "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->family, ModelFamily::kLlama);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->rope_scaling, RopeScaling::kLlama3);
  EXPECT_EQ(c->rope_factor, 8.0);
}

TEST(ModelConfig, ErrorsNameTheProblem) {
  auto a = parse_model_config(R"({"architectures": ["GPT2LMHeadModel"]})", "x/config.json");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kNotSupported);
  EXPECT_NE(a.status().message().find("GPT2LMHeadModel"), std::string::npos);
  EXPECT_NE(a.status().message().find("LlamaForCausalLM"), std::string::npos);  // lists what is supported
  auto b = parse_model_config(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})", "x/config.json");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("intermediate_size"), std::string::npos) << b.status().message();
  auto c = parse_model_config(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": "big"})", "x/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("hidden_size"), std::string::npos);
  auto d = parse_model_config("{not json", "x/config.json");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("x/config.json"), std::string::npos);
}

TEST(Checkpoint, OpensSyntheticLlamaAndOpt) {
  for (const char* arch : {"LlamaForCausalLM", "OPTForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}) {
    TempDir d;
    test::SyntheticModel m;
    m.architecture = arch;
    test::write_synthetic_model(d.path(), m);
    auto c = Checkpoint::Open(d.path());
    ASSERT_TRUE(c.ok()) << arch << ": " << c.status().ToString();
    EXPECT_EQ((*c)->linears().size(), size_t(m.layers * (std::string(arch) == "OPTForCausalLM" ? 6 : 7)));
    for (const LinearInfo& l : (*c)->linears()) {
      auto w = (*c)->linear_weight(l);
      ASSERT_TRUE(w.ok());
      EXPECT_EQ(int64_t(w->size()), l.rows * l.cols);
    }
  }
}

TEST(Checkpoint, ShardedInput) {
  TempDir d;
  test::SyntheticModel m;
  m.shards = 3;
  test::write_synthetic_model(d.path(), m);
  auto c = Checkpoint::Open(d.path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->files().size(), 3u);
  fs::remove(d.file("model-00002-of-00003.safetensors"));
  Status st = open_status(d.path());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("model-00002-of-00003.safetensors"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("missing"), std::string::npos) << st.message();
}

TEST(Checkpoint, RejectsShapeMismatchAndMissingWeight) {
  TempDir d;
  test::SyntheticModel m;
  test::write_synthetic_model(d.path(), m);
  // Claim a larger intermediate size than the weights have.
  nlohmann::json cfg = nlohmann::json::parse(test::read_bytes(d.file("config.json")));
  cfg["intermediate_size"] = 100;
  test::write_bytes(d.file("config.json"), cfg.dump());
  Status st = open_status(d.path());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("gate_proj.weight"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("[100, 64]"), std::string::npos) << st.message();
  cfg["intermediate_size"] = 96;
  cfg["num_hidden_layers"] = 3;
  test::write_bytes(d.file("config.json"), cfg.dump());
  st = open_status(d.path());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("num_hidden_layers is 3 but the weights hold 2 decoder layer(s)"), std::string::npos)
      << st.message();
}

TEST(Checkpoint, UnsupportedArchitectureAndMissingConfig) {
  TempDir d;
  test::SyntheticModel m;
  test::write_synthetic_model(d.path(), m);
  test::write_bytes(d.file("config.json"), R"({"architectures": ["FalconForCausalLM"]})");
  Status st = open_status(d.path());
  EXPECT_EQ(st.code(), StatusCode::kNotSupported);
  EXPECT_NE(st.message().find("config.json"), std::string::npos);
  fs::remove(d.file("config.json"));
  st = open_status(d.path());
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("config.json"), std::string::npos);
}

QuantizeOptions rtn(int bits, int group, bool sym = true) {
  QuantizeOptions o;
  o.spec.bits = bits;
  o.spec.group_size = group;
  o.spec.symmetric = sym;
  return o;
}

TEST(Quantize, WriteReadDequantizeIsBitExact) {
  TempDir d;
  test::SyntheticModel m;
  m.intermediate = 100;  // not a multiple of the group size: partial last group in down_proj
  test::write_synthetic_model(d.file("in"), m);
  for (int bits : {2, 3, 4, 8}) {
    for (bool sym : {true, false}) {
      QuantizeOptions o = rtn(bits, 32, sym);
      o.overwrite = true;
      auto rep = quantize_checkpoint(d.file("in"), d.file("out"), o);
      ASSERT_TRUE(rep.ok()) << rep.status().ToString();
      auto in = Checkpoint::Open(d.file("in"));
      auto out = Checkpoint::Open(d.file("out"));
      ASSERT_TRUE(in.ok() && out.ok());
      ASSERT_TRUE((*out)->is_quantized());
      EXPECT_EQ((*out)->quantization()->method, "rtn");
      for (const LinearInfo& l : (*in)->linears()) {
        auto w = (*in)->linear_weight(l);
        ASSERT_TRUE(w.ok());
        auto mem = quantize_rtn(w->data(), l.rows, l.cols, o.spec);
        auto disk = (*out)->get_quantized(l.module);
        ASSERT_TRUE(mem.ok() && disk.ok()) << disk.status().ToString();
        EXPECT_EQ(mem->codes, disk->codes) << l.module;
        EXPECT_EQ(mem->scales, disk->scales) << l.module;
        EXPECT_EQ(mem->zeros, disk->zeros) << l.module;
        const auto a = dequantize(*mem), b = dequantize(*disk);
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << l.module;
      }
      // Non-linear tensors are copied unchanged.
      auto e_in = (*in)->get("model.embed_tokens.weight");
      auto e_out = (*out)->get("model.embed_tokens.weight");
      ASSERT_TRUE(e_in.ok() && e_out.ok());
      ASSERT_EQ(e_in->nbytes(), e_out->nbytes());
      EXPECT_EQ(0, std::memcmp(e_in->data, e_out->data, e_in->nbytes()));
    }
  }
}

TEST(Quantize, FormatRoundTripsGroupIndexAndOutliers) {
  // The writer/reader pair carries every optional part of QuantizedTensor: replace one module of a
  // quantized folder with a tensor that has a group index and outliers, and read it back.
  TempDir d;
  test::SyntheticModel m;
  m.hidden = 12;
  m.intermediate = 12;
  m.heads = m.kv_heads = 2;
  m.layers = 1;
  m.vocab = 8;
  test::write_synthetic_model(d.file("in"), m);
  ASSERT_TRUE(quantize_checkpoint(d.file("in"), d.file("q"), rtn(3, 4, false)).ok());
  const std::string module = "model.layers.0.mlp.up_proj";
  QuantSpec s;
  s.bits = 3;
  s.group_size = 4;
  s.symmetric = false;
  const auto w = test::random_normal(12 * 12, 4);
  auto q = quantize_rtn(w.data(), 12, 12, s);
  ASSERT_TRUE(q.ok());
  q->g_idx = {2, 0, 1, 0, 2, 1, 0, 1, 2, 0, 1, 2};
  q->outliers.row_ptr.assign(13, 4);
  q->outliers.row_ptr[0] = 0;
  q->outliers.row_ptr[1] = q->outliers.row_ptr[2] = 2;
  q->outliers.row_ptr[3] = 3;
  q->outliers.col_idx = {1, 7, 0, 11};
  q->outliers.values = {float_to_fp16(1.5f), float_to_fp16(-2.0f), float_to_fp16(0.25f), float_to_fp16(3.0f)};
  ASSERT_TRUE(q->Validate().ok());
  {
    auto c = Checkpoint::Open(d.file("q"));
    ASSERT_TRUE(c.ok());
    std::vector<TensorToWrite> ts;
    for (const std::string& name : (*c)->tensor_names()) {
      if (name.rfind(module + ".", 0) == 0) continue;
      auto v = (*c)->get(name);
      const auto* p = static_cast<const uint8_t*>(v->data);
      ts.push_back({name, v->dtype, v->shape, std::vector<uint8_t>(p, p + v->nbytes())});
    }
    for (auto& t : internal::quantized_tensors(module, *q)) ts.push_back(std::move(t));
    ASSERT_TRUE(write_safetensors(d.file("q/model.safetensors"), ts).ok());
  }
  nlohmann::json cfg = nlohmann::json::parse(test::read_bytes(d.file("q/config.json")));
  cfg["quantization_config"]["modules"][module]["g_idx"] = true;
  cfg["quantization_config"]["modules"][module]["outliers"] = true;
  test::write_bytes(d.file("q/config.json"), cfg.dump());
  auto c = Checkpoint::Open(d.file("q"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto back = (*c)->get_quantized(module);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->g_idx, q->g_idx);
  EXPECT_EQ(back->outliers.row_ptr, q->outliers.row_ptr);
  EXPECT_EQ(back->outliers.col_idx, q->outliers.col_idx);
  EXPECT_EQ(back->outliers.values, q->outliers.values);
  EXPECT_EQ(dequantize(*back), dequantize(*q));
  // Storage accounting equals the bytes of the module's tensors as written.
  const uint64_t stored = test::module_bytes_on_disk(**c, module);
  EXPECT_EQ(back->storage_bytes(), stored);
  // A corrupt group index in the file is caught on read.
  q->g_idx[5] = 7;
  EXPECT_EQ(q->Validate().code(), StatusCode::kCorruption);
}

TEST(Quantize, RejectsUnknownFormatMajorVersion) {
  TempDir d;
  test::SyntheticModel m;
  test::write_synthetic_model(d.file("in"), m);
  ASSERT_TRUE(quantize_checkpoint(d.file("in"), d.file("out"), rtn(4, 32)).ok());
  nlohmann::json cfg = nlohmann::json::parse(test::read_bytes(d.file("out/config.json")));
  cfg["quantization_config"]["format_version"] = "2.0";
  test::write_bytes(d.file("out/config.json"), cfg.dump());
  Status st = open_status(d.file("out"));
  EXPECT_EQ(st.code(), StatusCode::kNotSupported);
  EXPECT_NE(st.message().find("2.0"), std::string::npos) << st.message();
}

TEST(Quantize, NonFiniteWeightNamesTheTensorAndLeavesNoOutput) {
  TempDir d;
  test::SyntheticModel m;
  m.dtype = DType::kF32;
  test::write_synthetic_model(d.file("in"), m);
  // Poison one element of a linear weight.
  auto c = Checkpoint::Open(d.file("in"));
  ASSERT_TRUE(c.ok());
  ASSERT_NE((*c)->find("model.layers.1.mlp.up_proj.weight"), nullptr);
  const uint64_t offset = (*c)->find("model.layers.1.mlp.up_proj.weight")->offset;
  const uint64_t data_start = (*c)->files()[0]->file_size() - [&] {
    uint64_t n = 0;
    for (const auto& x : (*c)->files()[0]->tensors()) n = std::max(n, x.offset + x.nbytes);
    return n;
  }();
  std::string raw = test::read_bytes(d.file("in/model.safetensors"));
  const float nan = NAN;
  std::memcpy(raw.data() + data_start + offset + 40, &nan, 4);
  test::write_bytes(d.file("in/model.safetensors"), raw);
  auto rep = quantize_checkpoint(d.file("in"), d.file("out"), rtn(4, 32));
  ASSERT_FALSE(rep.ok());
  EXPECT_NE(rep.status().message().find("model.layers.1.mlp.up_proj.weight"), std::string::npos)
      << rep.status().message();
  EXPECT_FALSE(fs::exists(d.file("out")));
  for (const auto& e : fs::directory_iterator(d.path()))
    EXPECT_EQ(e.path().filename().string().find(".out.llmq-tmp"), std::string::npos) << "left " << e.path();
}

TEST(Quantize, OutputFolderProblems) {
  TempDir d;
  test::SyntheticModel m;
  test::write_synthetic_model(d.file("in"), m);
  // Not writable (a path under a regular file, and a folder root cannot write into).
  test::write_bytes(d.file("file"), "x");
  auto a = quantize_checkpoint(d.file("in"), d.file("file/out"), rtn(4, 32));
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("file/out"), std::string::npos) << a.status().message();
  auto b = quantize_checkpoint(d.file("in"), "/proc/llmq-out", rtn(4, 32));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("/proc/llmq-out"), std::string::npos) << b.status().message();
  // Non-empty output folder without overwrite.
  fs::create_directories(d.file("busy"));
  test::write_bytes(d.file("busy/keep.txt"), "user data");
  auto c = quantize_checkpoint(d.file("in"), d.file("busy"), rtn(4, 32));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("--overwrite"), std::string::npos);
  EXPECT_EQ(test::read_bytes(d.file("busy/keep.txt")), "user data");
  // Quantizing a quantized folder is refused.
  ASSERT_TRUE(quantize_checkpoint(d.file("in"), d.file("q"), rtn(4, 32)).ok());
  auto e = quantize_checkpoint(d.file("q"), d.file("q2"), rtn(4, 32));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("already quantized"), std::string::npos);
}

// --overwrite never destroys the input: an output that is the input folder (directly, through a
// symbolic link or a "..") is inside it or holds it is refused, and every input byte survives.
TEST(Quantize, OutputThatIsOrHoldsTheInputIsRefused) {
  TempDir d;
  test::SyntheticModel m;
  fs::create_directories(d.file("parent"));
  test::write_synthetic_model(d.file("parent/in"), m);
  test::write_bytes(d.file("parent/notes.txt"), "user data");
  const std::string weights = test::read_bytes(d.file("parent/in/model.safetensors"));
  fs::create_directory_symlink(d.file("parent/in"), d.file("link"));
  QuantizeOptions o = rtn(4, 32);
  o.overwrite = true;
  for (const std::string& out : {d.file("parent/in"), d.file("parent/in/"), d.file("link"), d.file("parent/in/../in"),
                                d.file("parent/in/q"), d.file("parent"), d.path()}) {
    auto r = quantize_checkpoint(d.file("parent/in"), out, o);
    ASSERT_FALSE(r.ok()) << out;
    EXPECT_NE(r.status().message().find("input"), std::string::npos) << r.status().ToString();
    EXPECT_EQ(test::read_bytes(d.file("parent/in/model.safetensors")), weights) << out;
    EXPECT_EQ(test::read_bytes(d.file("parent/notes.txt")), "user data") << out;
  }
  // Through the link as the input, too; a sibling folder is fine.
  auto r = quantize_checkpoint(d.file("link"), d.file("parent/in"), o);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(quantize_checkpoint(d.file("parent/in"), d.file("parent/out"), o).ok());
}

// --overwrite replaces a folder llmq wrote and nothing else; --force as well replaces anything.
TEST(Quantize, OverwriteReplacesOnlyLlmqOutputsUnlessForced) {
  TempDir d;
  test::SyntheticModel m;
  test::write_synthetic_model(d.file("in"), m);
  QuantizeOptions o = rtn(4, 32);
  o.overwrite = true;
  // Somebody's folder (a float model, say): refused, every byte kept.
  test::write_synthetic_model(d.file("theirs"), m);
  test::write_bytes(d.file("theirs/notes.txt"), "user data");
  const std::string weights = test::read_bytes(d.file("theirs/model.safetensors"));
  auto r = quantize_checkpoint(d.file("in"), d.file("theirs"), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not written by llmq"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("--force"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(test::read_bytes(d.file("theirs/model.safetensors")), weights);
  EXPECT_EQ(test::read_bytes(d.file("theirs/notes.txt")), "user data");
  // An llmq output is replaced with --overwrite alone (also when its report is gone: its config says llmq).
  ASSERT_TRUE(quantize_checkpoint(d.file("in"), d.file("ours"), rtn(4, 32)).ok());
  EXPECT_TRUE(internal::written_by_llmq(d.file("ours")));
  ASSERT_TRUE(quantize_checkpoint(d.file("in"), d.file("ours"), o).ok());
  fs::remove(d.file("ours/llmq_report.json"));
  ASSERT_TRUE(quantize_checkpoint(d.file("in"), d.file("ours"), o).ok());
  // --force: anything.
  o.force = true;
  ASSERT_TRUE(quantize_checkpoint(d.file("in"), d.file("theirs"), o).ok());
  EXPECT_FALSE(fs::exists(d.file("theirs/notes.txt")));
}

// A folder that appears at the output path while a run is going is not replaced without overwrite.
TEST(Quantize, OutputThatAppearsDuringTheRunIsKept) {
  TempDir d;
  auto w = internal::CheckpointWriter::Create(d.file("out"), internal::ReplacePolicy::kNever, 1 << 20);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  fs::create_directories(d.file("out"));
  test::write_bytes(d.file("out/keep.txt"), "user data");
  Status st = (*w)->Commit("{}", d.path(), {});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("appeared (or changed) during the run"), std::string::npos) << st.ToString();
  EXPECT_EQ(test::read_bytes(d.file("out/keep.txt")), "user data");
  w->reset();  // the temporary folder goes with the writer
  for (const auto& e : fs::directory_iterator(d.path()))
    EXPECT_EQ(e.path().filename().string().find(".llmq-tmp"), std::string::npos) << e.path();
  // The temporary folder of a killed run (no such process) is removed by the next run for that output;
  // another output's and a live process's are left alone.
  fs::create_directories(d.file(".q.llmq-tmp-999999999/x"));
  fs::create_directories(d.file(".other.llmq-tmp-999999999"));
  fs::create_directories(d.file(".q.llmq-tmp-1"));  // pid 1 is alive
  ASSERT_TRUE(internal::CheckpointWriter::Create(d.file("q"), internal::ReplacePolicy::kNever, 1 << 20).ok());
  EXPECT_FALSE(fs::exists(d.file(".q.llmq-tmp-999999999")));
  EXPECT_TRUE(fs::exists(d.file(".other.llmq-tmp-999999999")));
  EXPECT_TRUE(fs::exists(d.file(".q.llmq-tmp-1")));
}

// Ctrl-C (the cancel callback) stops an RTN run too: Cancelled (exit 130 in the CLI), nothing written.
TEST(Quantize, CancelledRtnLeavesNothing) {
  TempDir d;
  test::SyntheticModel m;
  test::write_synthetic_model(d.file("in"), m);
  QuantizeOptions o = rtn(4, 32);
  o.cancel = [] { return true; };
  auto r = quantize_checkpoint(d.file("in"), d.file("out"), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().ToString();
  EXPECT_FALSE(fs::exists(d.file("out")));
  for (const auto& e : fs::directory_iterator(d.path()))
    EXPECT_EQ(e.path().filename().string().find(".llmq-tmp"), std::string::npos) << e.path();
}

TEST(Quantize, ShardedOutputReloads) {
  TempDir d;
  test::SyntheticModel m;
  m.layers = 3;
  test::write_synthetic_model(d.file("in"), m);
  QuantizeOptions o = rtn(4, 32);
  o.max_shard_bytes = 16 << 10;
  ASSERT_TRUE(quantize_checkpoint(d.file("in"), d.file("out"), o).ok());
  auto c = Checkpoint::Open(d.file("out"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_GT((*c)->files().size(), 1u);
  EXPECT_TRUE(fs::exists(d.file("out/model.safetensors.index.json")));
}

TEST(Quantize, DeterministicOutput) {
  TempDir d;
  test::SyntheticModel m;
  test::write_synthetic_model(d.file("in"), m);
  ASSERT_TRUE(quantize_checkpoint(d.file("in"), d.file("a"), rtn(3, 32, false)).ok());
  ASSERT_TRUE(quantize_checkpoint(d.file("in"), d.file("b"), rtn(3, 32, false)).ok());
  EXPECT_EQ(test::read_bytes(d.file("a/model.safetensors")), test::read_bytes(d.file("b/model.safetensors")));
}

// A real checkpoint from ../shared: per-layer relative error within what RTN gives on
// trained weights, and the output reloads with the same structure.
class RealModelRtn : public ::testing::TestWithParam<const char*> {};

TEST_P(RealModelRtn, EightBitAndFourBitG128) {
  LLMQ_NEED_SHARED(std::string("models/") + GetParam());
  const std::string model = test::shared_path(std::string("models/") + GetParam());
  ASSERT_TRUE(fs::exists(model + "/config.json")) << "missing " << model << "/config.json";
  TempDir d;
  struct Case {
    int bits, group;
    double max_rel;
  };
  // Bounds: a uniform grid of step s has RMS error s/sqrt(12); for trained (near-Gaussian)
  // weights that is about 0.6% at 8 bit per channel and about 12% at 4 bit g128 (sym).
  for (const Case& k : {Case{8, 0, 0.015}, Case{4, 128, 0.16}}) {
    auto rep = quantize_checkpoint(model, d.file("q" + std::to_string(k.bits)), rtn(k.bits, k.group));
    ASSERT_TRUE(rep.ok()) << rep.status().ToString();
    auto in = Checkpoint::Open(model);
    ASSERT_TRUE(in.ok());
    ASSERT_EQ(rep->layers.size(), (*in)->linears().size());
    for (const auto& l : rep->layers) {
      EXPECT_GT(l.relative_error, 0.0) << l.module;
      EXPECT_LT(l.relative_error, k.max_rel) << l.module << " at " << k.bits << " bits";
    }
    auto out = Checkpoint::Open(d.file("q" + std::to_string(k.bits)));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ((*out)->quantization()->modules.size(), (*in)->linears().size());
    EXPECT_LT((*out)->bytes_on_disk(), (*in)->bytes_on_disk());
    EXPECT_TRUE(fs::exists(d.file("q" + std::to_string(k.bits) + "/tokenizer.model")));
    // bits per weight as reported = bytes actually stored for the quantized modules.
    uint64_t qbytes = 0, nweights = 0;
    for (const auto& [module, info] : (*out)->quantization()->modules) {
      for (const char* suffix : {".qcodes", ".qscales", ".qzeros", ".g_idx"})
        if (const TensorInfo* t = (*out)->find(module + suffix)) qbytes += t->nbytes;
      nweights += uint64_t(info.rows * info.cols);
    }
    EXPECT_NEAR(rep->bits_per_weight, 8.0 * double(qbytes) / double(nweights), 1e-9);
  }
}

INSTANTIATE_TEST_SUITE_P(SharedModels, RealModelRtn, ::testing::Values("stories260K-hf", "stories5M-hf"));

}  // namespace
}  // namespace llmq

namespace llmq {
namespace {

void set_config_value(const std::string& folder, const std::string& key, const nlohmann::json& value) {
  auto cfg = nlohmann::json::parse(test::read_bytes(folder + "/config.json"));
  cfg[key] = value;
  test::write_bytes(folder + "/config.json", cfg.dump());
}

// A config that promises more layers than the weights hold is refused before anything is sized by
// that count (a billion layers must neither allocate nor hang); layers beyond the config's count
// and stray buffers are reported as unused.
TEST(Checkpoint, LayerCountIsCheckedAgainstTheWeightsAndUnusedTensorsAreReported) {
  test::TempDir d;
  test::SyntheticModel m;
  m.layers = 3;
  test::write_synthetic_model(d.file("in"), m);
  set_config_value(d.file("in"), "num_hidden_layers", 1000000000);
  auto huge = Checkpoint::Open(d.file("in"));
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("num_hidden_layers is 1000000000"), std::string::npos) << huge.status().ToString();
  EXPECT_NE(huge.status().message().find("hold 3 decoder layer"), std::string::npos) << huge.status().ToString();
  set_config_value(d.file("in"), "num_hidden_layers", 2);
  auto fewer = Checkpoint::Open(d.file("in"));
  ASSERT_TRUE(fewer.ok()) << fewer.status().ToString();
  const std::vector<std::string> unused = (*fewer)->UnusedTensors();
  ASSERT_FALSE(unused.empty());
  for (const std::string& name : unused) EXPECT_EQ(name.rfind("model.layers.2.", 0), 0u) << name;
  set_config_value(d.file("in"), "num_hidden_layers", 3);
  auto all = Checkpoint::Open(d.file("in"));
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE((*all)->UnusedTensors().empty());
  // Quantize reports them too (and copies them).
  set_config_value(d.file("in"), "num_hidden_layers", 2);
  auto rep = quantize_checkpoint(d.file("in"), d.file("q"), *QuantizeOptions::ForMethod("rtn"));
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->unused_tensors, unused);
  EXPECT_NE(rep->ToJson().find("\"unused_tensors\""), std::string::npos);
}

}  // namespace
}  // namespace llmq

namespace llmq {
namespace {

// Every config key that would change the function is implemented or refused naming the key and
// its value; neutral values are accepted.
TEST(Checkpoint, ConfigKeysTheRuntimeDoesNotImplementAreRefused) {
  struct Case {
    std::string architecture, key;
    nlohmann::json value;
    bool accepted;
  };
  const std::vector<Case> cases = {
      {"LlamaForCausalLM", "hidden_act", "gelu", false},
      {"LlamaForCausalLM", "hidden_act", "silu", true},
      {"LlamaForCausalLM", "partial_rotary_factor", 0.5, false},
      {"LlamaForCausalLM", "partial_rotary_factor", 1.0, true},
      {"LlamaForCausalLM", "embedding_multiplier", 12.0, false},
      {"LlamaForCausalLM", "residual_multiplier", 0.22, false},
      {"LlamaForCausalLM", "logits_scaling", 8.0, false},
      {"LlamaForCausalLM", "logits_scaling", 1.0, true},
      {"LlamaForCausalLM", "attention_multiplier", 0.0078125, false},
      {"LlamaForCausalLM", "attention_multiplier", 0.25, true},  // 1/sqrt(head_dim 16)
      {"LlamaForCausalLM", "final_logit_softcapping", 30.0, false},
      {"LlamaForCausalLM", "qk_norm", true, false},
      {"LlamaForCausalLM", "rope_theta", -1.0, false},
      {"LlamaForCausalLM", "rms_norm_eps", -1e-6, false},
      {"LlamaForCausalLM", "rope_scaling", nlohmann::json{{"rope_type", "yarn"}, {"factor", 4.0}}, false},
      // found by fuzz_config: a JSON type error used to escape as an exception
      {"LlamaForCausalLM", "rope_scaling", nlohmann::json{{"rope_type", {1, 2}}}, false},
      {"LlamaForCausalLM", "rope_scaling", nlohmann::json{{"type", "linear"}, {"factor", "4"}}, false},
      {"Qwen2ForCausalLM", "max_window_layers", 1, false},
      {"OPTForCausalLM", "activation_function", "gelu", false},
      {"OPTForCausalLM", "layer_norm_elementwise_affine", false, false},
      {"OPTForCausalLM", "scale_embedding", true, false},
  };
  for (const Case& c : cases) {
    test::TempDir d;
    test::SyntheticModel m;
    m.architecture = c.architecture;
    if (c.architecture == "Qwen2ForCausalLM") m.sliding_window = 8;
    test::write_synthetic_model(d.file("in"), m);
    auto cfg = nlohmann::json::parse(test::read_bytes(d.file("in/config.json")));
    cfg[c.key] = c.value;
    if (c.architecture == "Qwen2ForCausalLM") cfg["use_sliding_window"] = true;
    test::write_bytes(d.file("in/config.json"), cfg.dump());
    auto ck = Checkpoint::Open(d.file("in"));
    if (c.accepted) {
      EXPECT_TRUE(ck.ok()) << c.key << " = " << c.value.dump() << ": " << ck.status().ToString();
    } else {
      ASSERT_FALSE(ck.ok()) << c.key << " = " << c.value.dump() << " was accepted";
      EXPECT_NE(ck.status().message().find(c.key), std::string::npos) << ck.status().ToString();
    }
  }
}

}  // namespace
}  // namespace llmq
