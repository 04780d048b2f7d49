// The vocabulary of a SentencePiece model through the reference library (see spm_vocab.h).
#include "text/spm_vocab.h"

#include <sentencepiece_processor.h>

namespace llmq::internal {

Result<SpmVocab> read_spm_vocab(const std::string& model_path) {
  sentencepiece::SentencePieceProcessor sp;
  if (const auto st = sp.Load(model_path); !st.ok())
    return Status::Corruption(model_path + ": not a SentencePiece model (" + st.ToString() + ")");
  SpmVocab v;
  const int n = sp.GetPieceSize();
  for (int i = 0; i < n; ++i) {
    v.pieces.push_back(sp.IdToPiece(i));
    v.scores.push_back(sp.GetScore(i));
    v.types.push_back(sp.IsUnknown(i) ? 2 : sp.IsControl(i) ? 3 : sp.IsUnused(i) ? 5 : sp.IsByte(i) ? 6 : 1);
  }
  v.bos = sp.bos_id();
  v.eos = sp.eos_id();
  v.unk = sp.unk_id();
  v.pad = sp.pad_id();
  // The normalizer spec is not in the library's API: its effects are observed instead.
  std::vector<std::string> pieces;
  if (sp.Encode("a", &pieces).ok() && !pieces.empty()) v.add_dummy_prefix = pieces[0].rfind("\xE2\x96\x81", 0) == 0;
  std::vector<int> ids;
  std::string round_trip;
  if (sp.Encode("a  b", &ids).ok() && sp.Decode(ids, &round_trip).ok())
    v.removes_extra_whitespace = round_trip == "a b";
  return v;
}

}  // namespace llmq::internal
