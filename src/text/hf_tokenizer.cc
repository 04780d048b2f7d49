// Hugging Face tokenizer.json with a BPE model, both flavours:
//  - byte-level (GPT-2, OPT, Llama-3, Qwen2): the pre-tokenizer regex splits the text, every
//    byte of a piece becomes a printable character (GPT-2's bytes_to_unicode), BPE merges run
//    inside each piece;
//  - SentencePiece-style (Llama-2, Mistral): spaces become "▁" (normalizer Replace/Prepend or a
//    Metaspace pre-tokenizer), BPE runs on the result, symbols missing from the vocabulary fall
//    back to "<0xNN>" byte tokens.
// Added tokens are matched first (special and non-normalized ones in the raw text, the others in
// the normalized text) and map straight to their ids; the post-processor's special tokens
// (TemplateProcessing, RoBERTa/BERT) are prefix_ids()/suffix_ids().
// BPE is the merge loop of the tokenizers crate (models/bpe/word.rs): repeatedly apply the
// lowest-ranked adjacent merge, leftmost first, with a heap over a linked list (n log n).
#include "text/hf_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "io/file_util.h"
#include "io/json_util.h"
#include "text/unicode.h"

namespace llmq::internal {
namespace {

using json = nlohmann::json;
// Token ids index tables sized by the largest id: ids from a file are bounded (the largest real
// vocabularies have ~256K entries) so that one bad id cannot ask for gigabytes.
constexpr int32_t kMaxTokenId = 1 << 24;
const std::string kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁"

// GPT-2's reversible map from bytes to printable code points.
std::vector<uint32_t> bytes_to_unicode() {
  std::vector<uint32_t> map(256, 0);
  std::vector<bool> direct(256, false);
  for (int b = '!'; b <= '~'; ++b) direct[size_t(b)] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[size_t(b)] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[size_t(b)] = true;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) map[size_t(b)] = direct[size_t(b)] ? uint32_t(b) : next++;
  return map;
}

// Pre-tokenizer split regexes, hand-compiled (std::regex has no \p{L}). Each returns the end of
// the match starting at `pos` (always > pos).
enum class SplitRegex { kGpt2, kLlama3, kQwen2 };

size_t match_contraction(const std::string& s, size_t pos, bool ignore_case) {
  if (s[pos] != '\'') return 0;
  auto lower = [&](size_t i) { return i < s.size() ? char(ignore_case ? std::tolower(static_cast<unsigned char>(s[i])) : s[i]) : '\0'; };
  const char a = lower(pos + 1), b = lower(pos + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  return 0;
}

// \s+(?!\S) then \s+ : a whitespace run, minus its last character when a non-space follows.
size_t match_whitespace(const std::string& s, size_t pos) {
  size_t end = pos, last = pos, len = 0;
  while (end < s.size() && is_whitespace(decode_utf8(s, end, &len))) {
    last = end;
    end += len;
  }
  if (end == pos) return 0;
  if (end < s.size() && last > pos) return last;  // leave one space for the next piece
  return end;
}

size_t next_piece(const std::string& s, size_t pos, SplitRegex re) {
  size_t len = 0, l2 = 0;
  const uint32_t c = decode_utf8(s, pos, &len);
  const bool gpt2 = re == SplitRegex::kGpt2;
  if (size_t n = match_contraction(s, pos, !gpt2)) return pos + n;
  auto run = [&](size_t p, bool (*cls)(uint32_t), size_t max_count) {
    size_t count = 0, l = 0;
    while (p < s.size() && count < max_count && cls(decode_utf8(s, p, &l))) p += l, ++count;
    return p;
  };
  auto other = [](uint32_t x) { return !is_whitespace(x) && !is_letter(x) && !is_number(x); };
  if (gpt2) {
    // ' ?\p{L}+ | ' ?\p{N}+ | ' ?[^\s\p{L}\p{N}]+'
    const size_t p = c == ' ' && pos + 1 < s.size() ? pos + 1 : pos;
    const uint32_t d = p == pos ? c : decode_utf8(s, p, &l2);
    if (is_letter(d)) return run(p, is_letter, SIZE_MAX);
    if (is_number(d)) return run(p, is_number, SIZE_MAX);
    if (other(d)) {
      size_t q = p, l = 0;
      while (q < s.size() && other(decode_utf8(s, q, &l))) q += l;
      return q;
    }
  } else {
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (is_letter(c)) return run(pos, is_letter, SIZE_MAX);
    if (c != '\r' && c != '\n' && !is_number(c) && pos + len < s.size() && is_letter(decode_utf8(s, pos + len, &l2)))
      return run(pos + len, is_letter, SIZE_MAX);
    // \p{N}{1,3} (Llama-3) or \p{N} (Qwen2)
    if (is_number(c)) return run(pos, is_number, re == SplitRegex::kLlama3 ? 3 : 1);
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    const size_t p = c == ' ' && pos + 1 < s.size() ? pos + 1 : pos;
    const uint32_t d = p == pos ? c : decode_utf8(s, p, &l2);
    if (other(d)) {
      size_t q = p, l = 0;
      while (q < s.size() && other(decode_utf8(s, q, &l))) q += l;
      while (q < s.size() && (s[q] == '\r' || s[q] == '\n')) ++q;
      return q;
    }
    // \s*[\r\n]+ : up to the last newline of the whitespace run.
    if (is_whitespace(c)) {
      size_t q = pos, l = 0, after_newline = 0;
      while (q < s.size() && is_whitespace(decode_utf8(s, q, &l))) {
        if (s[q] == '\r' || s[q] == '\n') after_newline = q + 1;
        q += l;
      }
      if (after_newline > 0) return after_newline;
    }
  }
  if (size_t e = match_whitespace(s, pos)) return e;
  return pos + len;  // a character no alternative takes alone
}

Result<SplitRegex> recognize_regex(const std::string& pattern, const std::string& where) {
  if (pattern.find("\\p{N}{1,3}") != std::string::npos && pattern.find("(?i:'s") != std::string::npos)
    return SplitRegex::kLlama3;
  if (pattern.find("(?i:'s") != std::string::npos && pattern.find("\\p{N}|") != std::string::npos)
    return SplitRegex::kQwen2;
  if (pattern.find("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+") != std::string::npos) return SplitRegex::kGpt2;
  return Status::NotSupported(where + ": pre-tokenizer regex '" + pattern +
                              "' is not one llmq knows (GPT-2, Llama-3 or Qwen2 style)");
}

struct PreStep {
  enum Kind { kByteLevel, kSplit, kMetaspace } kind;
  SplitRegex regex = SplitRegex::kGpt2;
  bool use_regex = true, add_prefix_space = false;
  std::string replacement = kSpaceMarker;
  std::string prepend_scheme = "always";
  bool split = true;
};

struct NormStep {
  enum Kind { kPrepend, kReplace, kIdentity } kind;
  std::string a, b;  // prepend: a; replace: a -> b
};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) out += s.substr(pos, hit - pos) + to;
  return out + s.substr(pos);
}

// An entry of "added_tokens": matched in the text before the model runs, mapped straight to its id.
struct AddedToken {
  std::string content;  // normalized already when `normalized`
  int32_t id = -1;
  bool normalized = false;   // matched in the normalized text (else in the raw text)
  bool lstrip = false, rstrip = false;  // the match takes the whitespace on its left / right
  bool single_word = false;  // only where no word character touches it
};

// A piece of the input: text still to tokenize, or an added token's id.
struct Segment {
  std::string text;
  int32_t id = -1;    // >= 0: an added token
  bool at_start = false;  // begins at offset 0 of the original text (Metaspace "first")
};

class HfBpeTokenizer : public Tokenizer {
 public:
  Status Load(const std::string& path, const std::string& folder);
  Result<std::vector<int32_t>> Encode(const std::string& text) const override;
  Result<std::string> Decode(const std::vector<int32_t>& ids) const override;
  std::string TokenText(int32_t id) const override;
  Result<HfBpeVocab> GgmlVocab() const;
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }
  int64_t vocab_size() const override { return int64_t(id_to_token_.size()); }
  std::vector<int32_t> prefix_ids() const override { return prefix_; }
  std::vector<int32_t> suffix_ids() const override { return suffix_; }

 private:
  Status ParseNormalizer(const json& j);
  Status ParsePreTokenizer(const json& j);
  Status ParsePostProcessor(const json& j);
  std::string Normalize(const std::string& text, bool prepend) const;
  // Cuts `in` at the matches of the added tokens whose `normalized` flag equals `normalized`.
  void SplitAddedTokens(const Segment& in, bool normalized, std::vector<Segment>* out) const;
  void PreTokenizeAndBpe(const std::string& normalized, bool at_start, std::vector<int32_t>* out) const;
  void Bpe(const std::string& word, std::vector<int32_t>* out) const;
  std::string TokenBytes(int32_t id) const;  // decoded bytes of one token

  std::string path_;
  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int32_t> merge_rank_;  // "a b" -> rank
  std::vector<AddedToken> added_;
  std::vector<int32_t> prefix_, suffix_;  // the post-processor's special tokens around one sequence
  std::vector<bool> special_;
  std::vector<NormStep> norm_;
  std::vector<PreStep> pre_;
  bool byte_level_ = false, byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  int32_t unk_ = -1, bos_ = -1, eos_ = -1;
  std::vector<uint32_t> byte_to_cp_;
  std::unordered_map<uint32_t, uint8_t> cp_to_byte_;
  std::vector<int32_t> byte_token_;  // "<0xNN>" ids, -1 when absent
  bool strip_leading_space_ = false;  // SentencePiece-style decoding drops the prepended space
};

Status HfBpeTokenizer::ParseNormalizer(const json& j) {
  if (j.is_null()) return Status::Ok();
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& n : j.at("normalizers")) LLMQ_RETURN_IF_ERROR(ParseNormalizer(n));
  } else if (type == "Prepend") {
    norm_.push_back({NormStep::kPrepend, j.at("prepend").get<std::string>(), ""});
  } else if (type == "Replace") {
    if (!j.at("pattern").contains("String"))
      return Status::NotSupported(path_ + ": Replace normalizer with a regex pattern is not supported");
    norm_.push_back({NormStep::kReplace, j["pattern"]["String"].get<std::string>(), j.at("content").get<std::string>()});
  } else if (type == "NFC" || type == "NFKC") {
    // Real tokenizer.json files use these on text that is almost always already composed;
    // llmq has no composition tables and leaves the text as it is.
    norm_.push_back({NormStep::kIdentity, "", ""});
  } else {
    return Status::NotSupported(path_ + ": normalizer '" + type + "' is not supported (Sequence, Prepend, Replace, NFC)");
  }
  return Status::Ok();
}

Status HfBpeTokenizer::ParsePreTokenizer(const json& j) {
  if (j.is_null()) return Status::Ok();
  const std::string type = j.value("type", "");
  PreStep st{PreStep::kByteLevel};
  if (type == "Sequence") {
    for (const auto& p : j.at("pretokenizers")) LLMQ_RETURN_IF_ERROR(ParsePreTokenizer(p));
    return Status::Ok();
  } else if (type == "ByteLevel") {
    st.kind = PreStep::kByteLevel;
    st.use_regex = j.value("use_regex", true);
    st.add_prefix_space = j.value("add_prefix_space", false);
    byte_level_ = true;
  } else if (type == "Split") {
    st.kind = PreStep::kSplit;
    if (!j.at("pattern").contains("Regex") || j.value("behavior", "") != "Isolated" || j.value("invert", false))
      return Status::NotSupported(path_ + ": only Split pre-tokenizers with an isolated regex are supported");
    LLMQ_ASSIGN_OR_RETURN(st.regex, recognize_regex(j["pattern"]["Regex"].get<std::string>(), path_));
  } else if (type == "Metaspace") {
    st.kind = PreStep::kMetaspace;
    st.replacement = j.value("replacement", kSpaceMarker);
    if (j.contains("prepend_scheme")) st.prepend_scheme = j["prepend_scheme"].get<std::string>();
    else st.prepend_scheme = j.value("add_prefix_space", true) ? "always" : "never";
    st.split = j.value("split", true);
    strip_leading_space_ = st.prepend_scheme != "never";
  } else {
    return Status::NotSupported(path_ + ": pre-tokenizer '" + type + "' is not supported (ByteLevel, Split, Metaspace)");
  }
  pre_.push_back(st);
  return Status::Ok();
}

// The special tokens the post-processor puts around a single sequence (what the library adds with
// add_special_tokens): TemplateProcessing's "single" template, RoBERTa's / BERT's cls ... sep,
// and Sequence of those; ByteLevel changes only offsets.
Status HfBpeTokenizer::ParsePostProcessor(const json& j) {
  if (j.is_null()) return Status::Ok();
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : j.at("processors")) LLMQ_RETURN_IF_ERROR(ParsePostProcessor(p));
  } else if (type == "ByteLevel") {
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix_.push_back(json_int<int32_t>(j.at("cls").at(1)));
    suffix_.push_back(json_int<int32_t>(j.at("sep").at(1)));
  } else if (type == "TemplateProcessing") {
    bool after = false;
    for (const auto& item : j.at("single")) {
      if (item.contains("Sequence")) {
        if (item["Sequence"].value("id", "A") != "A")
          return Status::NotSupported(path_ + ": TemplateProcessing single template refers to sequence B");
        after = true;
      } else {
        const std::string name = item.at("SpecialToken").at("id").get<std::string>();
        const json& tok = j.at("special_tokens").at(name);
        for (const auto& id : tok.at("ids")) (after ? suffix_ : prefix_).push_back(json_int<int32_t>(id));
      }
    }
  } else {
    return Status::NotSupported(path_ + ": post-processor '" + type +
                                "' is not supported (TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)");
  }
  return Status::Ok();
}

Status HfBpeTokenizer::Load(const std::string& path, const std::string& folder) {
  path_ = path;
  LLMQ_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption(path + ": not valid JSON");
  try {
    const json& model = j.at("model");
    const std::string type = model.value("type", "BPE");
    if (type != "BPE")
      return Status::NotSupported(path + ": tokenizer model '" + type + "' is not supported (only BPE)");
    // The tokenizers library writes these as null or "" when unused (GPT-2-style files carry "");
    // a real prefix/suffix renames every symbol, and dropout makes encoding random.
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const json& v = model.value(key, json());
      if (!v.is_null() && !(v.is_string() && v.get<std::string>().empty()))
        return Status::NotSupported(path + ": BPE model key '" + key + "' = " + v.dump() + " is not supported (only null or \"\")");
    }
    if (const json& d = model.value("dropout", json()); !d.is_null() && !(d.is_number() && d.get<double>() == 0.0))
      return Status::NotSupported(path + ": BPE dropout " + d.dump() + " makes encoding random; llmq supports null or 0");
    for (auto it = model.at("vocab").begin(); it != model.at("vocab").end(); ++it) {
      const int32_t id = json_int<int32_t>(it.value());
      if (id < 0 || id >= kMaxTokenId)
        return Status::Corruption(path + ": id " + std::to_string(id) + " of token '" + it.key() + "' is outside [0, 2^24)");
      vocab_[it.key()] = id;
      if (size_t(id) >= id_to_token_.size()) id_to_token_.resize(size_t(id) + 1);
      id_to_token_[size_t(id)] = it.key();
    }
    int32_t rank = 0;
    for (const auto& m : model.at("merges")) {
      std::string key;
      if (m.is_string()) key = m.get<std::string>();
      else if (m.is_array() && m.size() == 2) key = m[0].get<std::string>() + " " + m[1].get<std::string>();
      else return Status::Corruption(path + ": merge " + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
      merge_rank_.emplace(key, rank++);
    }
    byte_fallback_ = model.value("byte_fallback", false);
    fuse_unk_ = model.value("fuse_unk", false);
    ignore_merges_ = model.value("ignore_merges", false);
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto u = vocab_.find(model["unk_token"].get<std::string>());
      if (u != vocab_.end()) unk_ = u->second;
    }
    LLMQ_RETURN_IF_ERROR(ParseNormalizer(j.value("normalizer", json())));
    LLMQ_RETURN_IF_ERROR(ParsePreTokenizer(j.value("pre_tokenizer", json())));
    for (const auto& a : j.value("added_tokens", json::array())) {
      AddedToken t;
      t.id = json_int<int32_t>(a.at("id"));
      if (t.id < 0 || t.id >= kMaxTokenId)
        return Status::Corruption(path + ": id " + std::to_string(t.id) + " of added token " + a.at("content").dump() +
                                  " is outside [0, 2^24)");
      t.content = a.at("content").get<std::string>();
      const bool special = a.value("special", false);
      // As the library: special tokens always match the raw text; others by their `normalized` flag.
      t.normalized = !special && a.value("normalized", true);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.single_word = a.value("single_word", false);
      if (t.normalized) t.content = Normalize(t.content, /*prepend=*/false);
      if (size_t(t.id) >= id_to_token_.size()) id_to_token_.resize(size_t(t.id) + 1);
      id_to_token_[size_t(t.id)] = a.at("content").get<std::string>();
      if (special_.size() <= size_t(t.id)) special_.resize(size_t(t.id) + 1, false);
      special_[size_t(t.id)] = special;
      if (!t.content.empty()) added_.push_back(std::move(t));
    }
    LLMQ_RETURN_IF_ERROR(ParsePostProcessor(j.value("post_processor", json())));
    // Metaspace in the normalizer (Llama-2 legacy layout) also means "drop the first space on decode".
    for (const auto& n : norm_)
      if (n.kind == NormStep::kPrepend && n.a == kSpaceMarker) strip_leading_space_ = true;
  } catch (const json::exception& e) {
    return Status::Corruption(path + ": " + e.what());
  }
  special_.resize(id_to_token_.size(), false);
  for (const auto* ids : {&prefix_, &suffix_})
    for (int32_t id : *ids)
      if (id < 0 || size_t(id) >= id_to_token_.size())
        return Status::Corruption(path + ": post-processor token id " + std::to_string(id) + " is outside the vocabulary");
  byte_to_cp_ = bytes_to_unicode();
  for (int b = 0; b < 256; ++b) cp_to_byte_[byte_to_cp_[size_t(b)]] = uint8_t(b);
  byte_token_.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = vocab_.find(name);
    if (it != vocab_.end()) byte_token_[size_t(b)] = it->second;
  }
  // BOS / EOS: tokenizer_config.json names them; fall back to the usual spellings.
  auto id_of = [&](const std::string& t) -> int32_t {
    auto it = vocab_.find(t);
    if (it != vocab_.end()) return it->second;
    for (size_t id = 0; id < id_to_token_.size(); ++id)
      if (special_[id] && id_to_token_[id] == t) return int32_t(id);
    return -1;
  };
  auto cfg_text = read_text_file((std::filesystem::path(folder) / "tokenizer_config.json").string());
  if (cfg_text.ok()) {
    json cfg = json::parse(*cfg_text, nullptr, false);
    auto token_of = [&](const char* key) -> std::string {
      if (!cfg.is_object() || !cfg.contains(key)) return "";
      const json& v = cfg[key];
      if (v.is_string()) return v.get<std::string>();
      if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
      return "";
    };
    if (!cfg.is_discarded()) {
      bos_ = id_of(token_of("bos_token"));
      eos_ = id_of(token_of("eos_token"));
    }
  }
  if (bos_ < 0) bos_ = std::max(id_of("<s>"), id_of("<|begin_of_text|>"));
  if (eos_ < 0) eos_ = std::max({id_of("</s>"), id_of("<|end_of_text|>"), id_of("<|endoftext|>")});
  if (id_to_token_.empty()) return Status::Corruption(path + ": empty vocabulary");
  return Status::Ok();
}

void HfBpeTokenizer::Bpe(const std::string& word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  // The word's characters as vocabulary symbols, before any merge (as the library does): a
  // character missing from the vocabulary becomes its <0xNN> byte tokens (byte_fallback), or the
  // unknown token (consecutive ones fused with fuse_unk), or is dropped, so that its neighbours
  // can merge across it.
  std::vector<std::string> sym;
  bool last_unk = false;
  for (std::string& c : utf8_chars(word)) {
    const bool known = vocab_.count(c) > 0;
    bool all_bytes = !known && byte_fallback_;
    for (unsigned char b : c) all_bytes = all_bytes && byte_token_[b] >= 0;
    if (known) {
      sym.push_back(std::move(c));
    } else if (all_bytes) {
      for (unsigned char b : c) sym.push_back(id_to_token_[size_t(byte_token_[b])]);
    } else if (unk_ >= 0) {
      if (fuse_unk_ && last_unk) continue;
      sym.push_back(id_to_token_[size_t(unk_)]);
    }
    last_unk = !known && !all_bytes && unk_ >= 0;
  }
  const int n = int(sym.size());
  if (n == 0) return;
  std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  std::vector<bool> alive(size_t(n), true);
  for (int i = 0; i < n; ++i) prev[size_t(i)] = i - 1, next[size_t(i)] = i + 1 < n ? i + 1 : -1;
  struct Cand {
    int32_t rank;
    int left;
    size_t len_left, len_right;  // symbol sizes when pushed (stale check)
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int l) {
    const int r = next[size_t(l)];
    if (l < 0 || r < 0) return;
    auto it = merge_rank_.find(sym[size_t(l)] + " " + sym[size_t(r)]);
    if (it != merge_rank_.end()) heap.push({it->second, l, sym[size_t(l)].size(), sym[size_t(r)].size()});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const int l = c.left, r = next[size_t(l)];
    if (!alive[size_t(l)] || r < 0 || sym[size_t(l)].size() != c.len_left || sym[size_t(r)].size() != c.len_right) continue;
    sym[size_t(l)] += sym[size_t(r)];
    alive[size_t(r)] = false;
    next[size_t(l)] = next[size_t(r)];
    if (next[size_t(r)] >= 0) prev[size_t(next[size_t(r)])] = l;
    if (prev[size_t(l)] >= 0) push(prev[size_t(l)]);
    push(l);
  }
  for (int i = 0; i >= 0 && i < n; i = next[size_t(i)]) {
    auto it = vocab_.find(sym[size_t(i)]);
    if (it != vocab_.end()) out->push_back(it->second);  // a merge whose result is not in the vocabulary: dropped
  }
}

std::string HfBpeTokenizer::Normalize(const std::string& raw, bool prepend) const {
  std::string text = raw;
  for (const auto& n : norm_) {
    if (n.kind == NormStep::kPrepend && prepend && !text.empty()) text = n.a + text;
    else if (n.kind == NormStep::kReplace) text = replace_all(text, n.a, n.b);
  }
  return text;
}

bool is_word_char(uint32_t cp) { return is_letter(cp) || is_number(cp) || cp == '_'; }

// The library's added-vocabulary split (leftmost match, the longest at a position; single_word
// matches need non-word characters around them; lstrip / rstrip take the adjacent whitespace).
void HfBpeTokenizer::SplitAddedTokens(const Segment& in, bool normalized, std::vector<Segment>* out) const {
  const std::string& s = in.text;
  std::vector<size_t> next_hit(added_.size(), 0);  // cached next occurrence of each token (npos: none)
  for (size_t k = 0; k < added_.size(); ++k)
    next_hit[k] = added_[k].normalized == normalized ? s.find(added_[k].content) : std::string::npos;
  size_t pos = 0, seg = 0;
  while (pos < s.size()) {
    size_t best = std::string::npos, best_k = 0;
    for (size_t k = 0; k < added_.size(); ++k) {
      if (next_hit[k] == std::string::npos) continue;
      if (next_hit[k] < pos) next_hit[k] = s.find(added_[k].content, pos);
      const size_t h = next_hit[k];
      if (h != std::string::npos && (h < best || (h == best && added_[k].content.size() > added_[best_k].content.size())))
        best = h, best_k = k;
    }
    if (best == std::string::npos) break;
    const AddedToken& t = added_[best_k];
    size_t start = best, end = best + t.content.size();
    if (t.single_word) {
      size_t len = 0;
      bool ok = true;
      if (start > 0) {  // the code point ending just before the match
        size_t b = start - 1;
        while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;  // back to its lead byte
        ok = !is_word_char(decode_utf8(s, b, &len));
      }
      if (ok && end < s.size()) ok = !is_word_char(decode_utf8(s, end, &len));
      if (!ok) {
        pos = best + 1;
        continue;
      }
    }
    if (t.lstrip)  // Unicode White_Space, as Rust's char::is_whitespace
      for (size_t b = start, len = 0; b > seg;) {
        do --b; while (b > seg && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80);
        if (!is_whitespace(decode_utf8(s, b, &len))) break;
        start = b;
      }
    if (t.rstrip)
      for (size_t len = 0; end < s.size() && is_whitespace(decode_utf8(s, end, &len));) end += len;
    if (start > seg) out->push_back({s.substr(seg, start - seg), -1, in.at_start && seg == 0});
    out->push_back({"", t.id, false});
    pos = seg = end;
  }
  if (seg < s.size() || s.empty()) out->push_back({s.substr(seg), -1, in.at_start && seg == 0});
}

void HfBpeTokenizer::PreTokenizeAndBpe(const std::string& text, bool at_start, std::vector<int32_t>* out) const {
  std::vector<std::string> pieces = {text};
  for (const PreStep& st : pre_) {
    std::vector<std::string> next;
    for (const std::string& p : pieces) {
      if (st.kind == PreStep::kMetaspace) {
        std::string t = replace_all(p, " ", st.replacement);
        if (!t.empty() && (st.prepend_scheme == "always" || (st.prepend_scheme == "first" && at_start)) &&
            t.compare(0, st.replacement.size(), st.replacement) != 0)
          t = st.replacement + t;
        if (!st.split) {
          next.push_back(t);
          continue;
        }
        // Split before every replacement character (it stays at the start of its piece).
        size_t start = 0;
        for (size_t hit = t.find(st.replacement, 1); hit != std::string::npos; hit = t.find(st.replacement, hit + 1)) {
          next.push_back(t.substr(start, hit - start));
          start = hit;
        }
        next.push_back(t.substr(start));
      } else {
        std::string t = p;
        if (st.kind == PreStep::kByteLevel && st.add_prefix_space && !t.empty() && t[0] != ' ') t = " " + t;
        const bool split = st.kind == PreStep::kSplit || st.use_regex;
        const SplitRegex re = st.kind == PreStep::kSplit ? st.regex : SplitRegex::kGpt2;
        std::vector<std::string> parts;
        if (split)
          for (size_t pos = 0; pos < t.size();) {
            const size_t end = next_piece(t, pos, re);
            parts.push_back(t.substr(pos, end - pos));
            pos = end;
          }
        else parts.push_back(t);
        for (auto& part : parts) {
          if (st.kind == PreStep::kByteLevel) {
            std::string mapped;
            for (unsigned char b : part) mapped += encode_utf8(byte_to_cp_[b]);
            part = mapped;
          }
          next.push_back(part);
        }
      }
    }
    pieces = std::move(next);
  }
  for (const auto& p : pieces) Bpe(p, out);
}

// As the library: cut the raw text at the raw-matched added tokens, normalize each remaining piece,
// cut those at the normalized added tokens, then pre-tokenize and run BPE on each piece.
Result<std::vector<int32_t>> HfBpeTokenizer::Encode(const std::string& text) const {
  std::vector<Segment> raw, norm;
  SplitAddedTokens({text, -1, true}, /*normalized=*/false, &raw);
  for (const Segment& r : raw) {
    if (r.id >= 0) {
      norm.push_back(r);
      continue;
    }
    SplitAddedTokens({Normalize(r.text, /*prepend=*/true), -1, r.at_start}, /*normalized=*/true, &norm);
  }
  std::vector<int32_t> out;
  for (const Segment& n : norm) {
    if (n.id >= 0) out.push_back(n.id);
    else if (!n.text.empty()) PreTokenizeAndBpe(n.text, n.at_start, &out);
  }
  return out;
}

std::string HfBpeTokenizer::TokenBytes(int32_t id) const {
  const std::string& t = id_to_token_[size_t(id)];
  if (const int b = byte_token_value(t); b >= 0 && byte_token_[size_t(b)] == id) return std::string(1, char(b));
  if (byte_level_ && !(size_t(id) < special_.size() && special_[size_t(id)])) {
    std::string out;
    for (size_t pos = 0; pos < t.size();) {
      size_t len;
      const uint32_t cp = decode_utf8(t, pos, &len);
      auto it = cp_to_byte_.find(cp);
      out += it != cp_to_byte_.end() ? std::string(1, char(it->second)) : t.substr(pos, len);
      pos += len;
    }
    return out;
  }
  return replace_all(t, kSpaceMarker, " ");
}

Result<std::string> HfBpeTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= id_to_token_.size())
      return Status::InvalidArgument(path_ + ": token id " + std::to_string(id) + " is outside the vocabulary");
    if (special_[size_t(id)]) continue;  // like skip_special_tokens
    out += TokenBytes(id);
  }
  if (strip_leading_space_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

std::string HfBpeTokenizer::TokenText(int32_t id) const {
  if (id < 0 || size_t(id) >= id_to_token_.size() || special_[size_t(id)]) return "";
  return TokenBytes(id);
}

}  // namespace

std::vector<std::string> split_pretokens_for_test(const std::string& text, const std::string& flavour) {
  const SplitRegex re = flavour == "llama3" ? SplitRegex::kLlama3 : flavour == "qwen2" ? SplitRegex::kQwen2 : SplitRegex::kGpt2;
  std::vector<std::string> out;
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = next_piece(text, pos, re);
    out.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

Result<HfBpeVocab> HfBpeTokenizer::GgmlVocab() const {
  auto refuse = [&](const std::string& why) {
    return Status::NotSupported(path_ + ": " + why + ", which llama.cpp's byte-level BPE (gpt2 vocab) cannot reproduce");
  };
  if (!byte_level_) return refuse("not a byte-level BPE (SentencePiece-style tokenizer.json)");
  if (byte_fallback_) return refuse("byte_fallback");
  for (const NormStep& n : norm_)
    if (n.kind != NormStep::kIdentity) return refuse("a Prepend/Replace normalizer");
  HfBpeVocab v;
  int splits = 0;
  SplitRegex re = SplitRegex::kGpt2;
  for (const PreStep& p : pre_) {
    if (p.kind == PreStep::kMetaspace) return refuse("a Metaspace pre-tokenizer");
    if (p.kind == PreStep::kSplit) {
      ++splits;
      re = p.regex;
    } else if (p.add_prefix_space) {
      return refuse("ByteLevel add_prefix_space");
    }
  }
  if (splits > 1) return refuse("more than one Split pre-tokenizer");
  v.pre = re == SplitRegex::kLlama3 ? "llama-bpe" : re == SplitRegex::kQwen2 ? "qwen2" : "gpt-2";
  if (ignore_merges_ != (re == SplitRegex::kLlama3)) return refuse("ignore_merges without Llama-3's regex (or the reverse)");
  v.tokens = id_to_token_;
  v.types.assign(v.tokens.size(), 1);
  for (const AddedToken& a : added_) {
    v.types[size_t(a.id)] = special_[size_t(a.id)] ? 3 : 4;
    if (a.lstrip || a.rstrip || a.single_word)
      v.flagged_added_tokens.push_back(id_to_token_[size_t(a.id)] + " (" +
                                       (a.single_word ? "single_word" : a.lstrip ? "lstrip" : "rstrip") + ")");
  }
  for (size_t id = 0; id < v.tokens.size(); ++id)
    if (v.tokens[id].empty()) v.types[id] = 5;  // a hole in the ids
  v.merges.resize(merge_rank_.size());
  for (const auto& [m, rank] : merge_rank_) v.merges[size_t(rank)] = m;
  v.prefix = prefix_;
  v.suffix = suffix_;
  v.bos = bos_;
  v.eos = eos_;
  return v;
}

Result<HfBpeVocab> read_hf_bpe_vocab(const std::string& path) {
  HfBpeTokenizer t;
  LLMQ_RETURN_IF_ERROR(t.Load(path, std::filesystem::path(path).parent_path().string()));
  return t.GgmlVocab();
}

Result<std::unique_ptr<Tokenizer>> open_hf_tokenizer(const std::string& path) {
  auto t = std::make_unique<HfBpeTokenizer>();
  LLMQ_RETURN_IF_ERROR(t->Load(path, std::filesystem::path(path).parent_path().string()));
  return std::unique_ptr<Tokenizer>(std::move(t));
}

}  // namespace llmq::internal
