// safetensors reader/writer: round trips and every class of corrupt input.
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <cstring>
#include <filesystem>

#include "test_util.h"

namespace llmq {
namespace {

using test::TempDir;

std::string header_file(const std::string& header_json, size_t data_bytes, uint64_t declared_len = 0) {
  std::string s(8, '\0');
  const uint64_t len = declared_len ? declared_len : header_json.size();
  std::memcpy(s.data(), &len, 8);
  return s + header_json + std::string(data_bytes, '\x01');
}

// Expects Open to fail with `code` and a message containing the file name and `needle`.
void expect_open_fails(const std::string& path, StatusCode code, const std::string& needle) {
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok()) << "opened a corrupt file: " << needle;
  EXPECT_EQ(f.status().code(), code) << f.status().ToString();
  EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status().message();
  EXPECT_NE(f.status().message().find(needle), std::string::npos) << f.status().message();
}

TEST(Safetensors, WriteReadRoundTrip) {
  TempDir d;
  std::vector<TensorToWrite> ts;
  ts.push_back({"a", DType::kF32, {2, 3}, std::vector<uint8_t>(24, 7)});
  ts.push_back({"b.weight", DType::kF16, {5}, std::vector<uint8_t>(10, 9)});
  ts.push_back({"empty", DType::kI32, {0, 4}, {}});
  ts.push_back({"c", DType::kU8, {3}, {1, 2, 3}});
  ASSERT_TRUE(write_safetensors(d.file("x.safetensors"), ts, {{"format", "pt"}}).ok());
  EXPECT_FALSE(std::filesystem::exists(d.file("x.safetensors.tmp-" + std::to_string(getpid()))));
  auto f = SafetensorsFile::Open(d.file("x.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->tensors().size(), 4u);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  for (const auto& t : ts) {
    auto v = (*f)->get(t.name);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->dtype, t.dtype);
    EXPECT_EQ(v->shape, t.shape);
    ASSERT_EQ(v->nbytes(), t.bytes.size());
    if (!t.bytes.empty()) {
      EXPECT_EQ(std::memcmp(v->data, t.bytes.data(), t.bytes.size()), 0);
    }
  }
  // Header is padded so the data section starts 8-byte aligned.
  const std::string raw = test::read_bytes(d.file("x.safetensors"));
  uint64_t hl;
  std::memcpy(&hl, raw.data(), 8);
  EXPECT_EQ(hl % 8, 0u);
  EXPECT_EQ((*f)->get("missing").status().code(), StatusCode::kNotFound);
}

TEST(Safetensors, ViewKeepsMappingAlive) {
  TempDir d;
  ASSERT_TRUE(write_safetensors(d.file("x.safetensors"), {{"a", DType::kF32, {1}, {0, 0, 128, 63}}}).ok());
  TensorView v;
  {
    auto f = SafetensorsFile::Open(d.file("x.safetensors"));
    ASSERT_TRUE(f.ok());
    v = *(*f)->get("a");
  }
  EXPECT_EQ(*v.as<float>(), 1.0f);
}

TEST(Safetensors, WriterRejectsMismatchedBytes) {
  TempDir d;
  Status st = write_safetensors(d.file("x.safetensors"), {{"a", DType::kF32, {2}, std::vector<uint8_t>(4)}});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(d.file("x.safetensors")));
}

TEST(SafetensorsCorrupt, TruncatedBelowHeaderLength) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"), "abc");
  expect_open_fails(d.file("t.safetensors"), StatusCode::kCorruption, "too short");
}

TEST(SafetensorsCorrupt, HeaderLengthLargerThanFile) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"), header_file("{}", 0, 4096));
  expect_open_fails(d.file("t.safetensors"), StatusCode::kCorruption, "larger than the file");
}

TEST(SafetensorsCorrupt, HugeHeaderLength) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"), header_file("{}", 0, uint64_t(1) << 40));
  expect_open_fails(d.file("t.safetensors"), StatusCode::kCorruption, "exceeds");
}

TEST(SafetensorsCorrupt, MalformedJson) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"), header_file("{\"a\": {\"dtype\": ", 0));
  expect_open_fails(d.file("t.safetensors"), StatusCode::kCorruption, "not valid JSON");
  test::write_bytes(d.file("u.safetensors"), header_file("[1, 2]", 0));
  expect_open_fails(d.file("u.safetensors"), StatusCode::kCorruption, "not a JSON object");
}

TEST(SafetensorsCorrupt, DeeplyNestedJsonDoesNotCrash) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"), header_file(std::string(100000, '[') + std::string(100000, ']'), 0));
  auto f = SafetensorsFile::Open(d.file("t.safetensors"));
  EXPECT_FALSE(f.ok());
}

TEST(SafetensorsCorrupt, UnknownDtype) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"),
                    header_file(R"({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}})", 4));
  expect_open_fails(d.file("t.safetensors"), StatusCode::kNotSupported, "F8_E4M3");
}

TEST(SafetensorsCorrupt, ShapeByteMismatch) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"),
                    header_file(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", 20));
  expect_open_fails(d.file("t.safetensors"), StatusCode::kCorruption, "needs 24");
}

TEST(SafetensorsCorrupt, OffsetsOutOfRange) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"),
                    header_file(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8));
  expect_open_fails(d.file("t.safetensors"), StatusCode::kCorruption, "outside the data section");
  test::write_bytes(d.file("u.safetensors"),
                    header_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8));
  expect_open_fails(d.file("u.safetensors"), StatusCode::kCorruption, "before begin");
  test::write_bytes(d.file("v.safetensors"),
                    header_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 8));
  expect_open_fails(d.file("v.safetensors"), StatusCode::kCorruption, "data_offsets");
}

TEST(SafetensorsCorrupt, OverlappingTensors) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"),
                    header_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                                12));
  expect_open_fails(d.file("t.safetensors"), StatusCode::kCorruption, "overlap");
}

TEST(SafetensorsCorrupt, DuplicateNames) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"),
                    header_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                    "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                8));
  expect_open_fails(d.file("t.safetensors"), StatusCode::kCorruption, "appears twice");
}

TEST(SafetensorsCorrupt, BadShapeAndFields) {
  TempDir d;
  test::write_bytes(d.file("t.safetensors"),
                    header_file(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4));
  expect_open_fails(d.file("t.safetensors"), StatusCode::kCorruption, "negative");
  test::write_bytes(d.file("u.safetensors"), header_file(R"({"a": {"dtype": "F32"}})", 0));
  expect_open_fails(d.file("u.safetensors"), StatusCode::kCorruption, "needs dtype, shape and data_offsets");
  test::write_bytes(d.file("v.safetensors"),
                    header_file(R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 0]}})", 0));
  expect_open_fails(d.file("v.safetensors"), StatusCode::kCorruption, "overflows");
}

TEST(SafetensorsCorrupt, TruncatedDataOfRealFile) {
  TempDir d;
  std::vector<TensorToWrite> ts{{"a", DType::kF32, {64}, std::vector<uint8_t>(256, 1)}};
  ASSERT_TRUE(write_safetensors(d.file("x.safetensors"), ts).ok());
  std::string raw = test::read_bytes(d.file("x.safetensors"));
  test::write_bytes(d.file("t.safetensors"), raw.substr(0, raw.size() - 10));
  expect_open_fails(d.file("t.safetensors"), StatusCode::kCorruption, "truncated");
}

TEST(SafetensorsCorrupt, MissingFile) {
  auto f = SafetensorsFile::Open("/nonexistent/model.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find("/nonexistent/model.safetensors"), std::string::npos);
}

}  // namespace
}  // namespace llmq
