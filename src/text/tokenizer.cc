// Tokenizer::Open: SentencePiece tokenizer.model through the reference library
// (libsentencepiece), so that ids match the reference fixtures exactly, or a Hugging Face
// tokenizer.json (BPE; text/hf_tokenizer.cc).
#include "llmq/tokenizer.h"

#include <sentencepiece_processor.h>

#include <filesystem>

#include "text/hf_tokenizer.h"
#include "text/unicode.h"

namespace llmq {
namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::string path) : path_(std::move(path)) {}
  Status Load() {
    const auto st = sp_.Load(path_);
    if (!st.ok()) return Status::Corruption(path_ + ": not a SentencePiece model (" + st.ToString() + ")");
    return Status::Ok();
  }
  Result<std::vector<int32_t>> Encode(const std::string& text) const override {
    std::vector<int> ids;
    const auto st = sp_.Encode(text, &ids);
    if (!st.ok()) return Status::InvalidArgument(path_ + ": cannot encode text: " + st.ToString());
    return std::vector<int32_t>(ids.begin(), ids.end());
  }
  Result<std::string> Decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> v;
    for (int32_t id : ids) {
      if (id < 0 || id >= sp_.GetPieceSize())
        return Status::InvalidArgument(path_ + ": token id " + std::to_string(id) + " is outside the vocabulary");
      v.push_back(id);
    }
    std::string out;
    const auto st = sp_.Decode(v, &out);
    if (!st.ok()) return Status::InvalidArgument(path_ + ": cannot decode: " + st.ToString());
    return out;
  }
  std::string TokenText(int32_t id) const override {
    if (id < 0 || id >= sp_.GetPieceSize() || sp_.IsControl(id)) return "";
    const std::string piece = sp_.IdToPiece(id);
    if (const int b = internal::byte_token_value(piece); sp_.IsByte(id) && b >= 0) return std::string(1, char(b));
    std::string out;
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {  // U+2581 word boundary marker
        out += ' ';
        i += 3;
      } else {
        out += piece[i++];
      }
    }
    return out;
  }
  std::vector<int32_t> prefix_ids() const override {  // Llama's convention: BOS, no EOS
    return sp_.bos_id() >= 0 ? std::vector<int32_t>{sp_.bos_id()} : std::vector<int32_t>{};
  }
  std::vector<int32_t> suffix_ids() const override { return {}; }
  int32_t bos_id() const override { return sp_.bos_id(); }
  int32_t eos_id() const override { return sp_.eos_id(); }
  int64_t vocab_size() const override { return sp_.GetPieceSize(); }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

Result<std::vector<int32_t>> Tokenizer::EncodeWithSpecialTokens(const std::string& text) const {
  LLMQ_ASSIGN_OR_RETURN(std::vector<int32_t> ids, Encode(text));
  std::vector<int32_t> out = prefix_ids();
  out.insert(out.end(), ids.begin(), ids.end());
  const std::vector<int32_t> suffix = suffix_ids();
  out.insert(out.end(), suffix.begin(), suffix.end());
  return out;
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::OpenSentencePiece(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status::NotFound(path + ": no such file");
  auto t = std::make_unique<SentencePieceTokenizer>(path);
  LLMQ_RETURN_IF_ERROR(t->Load());
  return std::unique_ptr<Tokenizer>(std::move(t));
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::Open(const std::string& folder) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path sp = fs::path(folder) / "tokenizer.model";
  // tokenizer.model first: when both exist it is the original, and the reference library reads it.
  if (fs::exists(sp, ec)) return OpenSentencePiece(sp.string());
  const fs::path hf = fs::path(folder) / "tokenizer.json";
  if (fs::exists(hf, ec)) return internal::open_hf_tokenizer(hf.string());
  return Status::NotFound(folder + ": no tokenizer (tokenizer.model or tokenizer.json)");
}

}  // namespace llmq
