// Quantizing a whole checkpoint: the entry point behind `llmq quantize`.
#ifndef LLMQ_QUANTIZE_H_
#define LLMQ_QUANTIZE_H_

#include "llmq/export.h"

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "llmq/adpq.h"
#include "llmq/billm.h"
#include "llmq/gptq.h"
#include "llmq/kernels.h"
#include "llmq/progress.h"
#include "llmq/quant.h"
#include "llmq/status.h"

namespace llmq {


// Calibration data for the methods that need it (GPTQ).
struct LLMQ_EXPORT CalibrationOptions {
  // A text file, a folder of .txt files, a .jsonl file of {"text": ...} rows (joined with
  // "\n\n"), or pre-tokenized ids: a .json array of windows (arrays of ids) or of ids,
  // or a .bin file of little-endian int32 ids.
  std::string data;
  int64_t nsamples = 128;    // windows
  int64_t seq_len = 2048;    // tokens per window, capped at the model's context
  uint64_t seed = 0;         // window start positions
  bool fp16_activations = false;  // keep the calibration activations in fp16 (half the memory)
};

// AWQ's scale and clip searches (../shared/docs/algorithms.md §3; defaults are AutoAWQ's).
struct LLMQ_EXPORT AwqOptions {
  int grid = 20;             // alpha in {0, 1/grid, ..., (grid-1)/grid}
  // s = mean|x|^a / (w_mean^(1-a) + 1e-4), w_mean the mean over rows of |w| / max|w| of its group
  // (AutoAWQ's duo scaling); false: s = mean|x|^a (llm-awq).
  bool duo_scaling = true;
  bool clip = true;          // clip search for every linear but q and k
  int clip_grid = 20;        // clip candidates absmax * (1 - i/clip_grid) ...
  double max_shrink = 0.5;   // ... for i < max_shrink * clip_grid (down to 55%)
  int64_t clip_tokens = 512; // tokens the clip search looks at (a strided subsample)
  // Under grouped-query attention v_proj has fewer rows than o_proj has inputs; the reference
  // skips the v -> o site there. true: scale it with one scale per kv channel (the o-input
  // statistics averaged over the query heads that share it), which still folds exactly.
  bool gqa_v_to_o = true;
};

// OAC (algorithms.md §6): how the output-adaptive Hessians are formed.
struct LLMQ_EXPORT OacOptions {
  bool per_token = false;  // H = Σ_t ‖δ_t‖² x_t x_tᵀ instead of per sequence H = Σ_n G_nᵀG_n, G_n = Σ_t δ_t x_tᵀ
  bool once = false;       // gradients of the float model instead of block by block with the earlier blocks quantized
  // With `once`: one backward pass per window keeps ∂L/∂out of every later block (windows x later
  // blocks x seq_len x hidden x 4 bytes), so each block is differentiated once per window (time
  // linear in depth) instead of once per later block (quadratic). Above this many bytes the
  // quadratic way is used; 0 always uses it.
  int64_t gradient_memory_bytes = int64_t(4) << 30;
};

// The method names quantize_checkpoint accepts, in the order the help texts list them.
LLMQ_EXPORT std::vector<std::string> quantize_methods();

// Option groups a method may take beyond the common ones (spec, int8_activations, overwrite,
// shards, progress). Validate() refuses true_sequential, target_bits and outlier_threshold for
// a method that does not take them; the CLI refuses every flag of a group the method does not take.
enum class MethodOption {
  kCalibration,     // calibration (every calibrated method, and llm.int8's fixed outlier columns), resume
  kGptq,            // gptq.damp, block_size (the GPTQ engine and BiLLM)
  kActOrder,        // gptq.act_order, static_groups (the GPTQ engine's column order)
  kTrueSequential,  // true_sequential
  kOutliers,        // gptq.outlier_threshold, target_bits (SpQR)
  kAwq,             // awq
  kOac,             // oac
  kAdpq,            // adpq
  kAlpha,           // alpha (SmoothQuant)
  kGgmlGrid,        // gguf_type: codes and scales on llama.cpp's block grids
  kBillm,           // billm (BiLLM's searches)
  kBitBudget,       // target_bits as a bit budget over the linears (bit_menu, bit_sensitivity)
};
// How a bit budget estimates what a linear loses at each spec of the menu (QuantizeOptions):
// kWeight ||W - Q||² (data-free, NNCF's data-free mode), kHessian tr((W - Q) H (W - Q)ᵀ) with the
// float model's layer-input Hessians (GPTQ's proxy), kOutputAdaptive the same with OAC's
// output-adaptive Hessians; Q the RTN quantization at that spec. kDefault: kOutputAdaptive when
// calibration data is given, else kWeight — measured best on every level and model of RESULTS.md
// (the input-Hessian proxy lost to the data-free weight error at 3.25 and 4.25 bits), at 2-4x the
// plan time of kHessian.
enum class BitSensitivity { kDefault, kWeight, kHessian, kOutputAdaptive };
// What Q is in a bit budget's estimates: kRtn (round to nearest at each spec), or kGptq (GPTQ at
// each spec with the sensitivity's Hessian: the error the GPTQ-engine methods will make; needs the
// hessian or oac sensitivity, and costs one GPTQ solve per linear and menu entry).
enum class BitEstimate { kRtn, kGptq };
LLMQ_EXPORT const char* bit_sensitivity_name(BitSensitivity s);  // "weight", "hessian", "oac", "default"
// The menu a bit budget chooses from when QuantizeOptions::bit_menu is empty: 2, 3 and 4 bits in
// groups of 32, 64 and 128, and 8 bits in groups of 128, with base's symmetric choice and scales.
// At target_bits >= 3 the plan leaves the 2-bit specs out whenever the budget can be met without
// them (measured: 2-bit linears cost more than estimated; the report's menu says which was used).
LLMQ_EXPORT std::vector<QuantSpec> default_bit_menu(const QuantSpec& base);
// The menu with a GGUF type (QuantizeOptions::gguf_type): every ggml block type llmq writes, q2_k
// to q8_0; each linear chooses among those whose blocks divide its rows (the K types need
// multiples of 256 columns, the others 32). As with the llmq menu, q2_k is left out at
// target_bits >= 3 when the budget holds without it.
LLMQ_EXPORT std::vector<QuantSpec> default_ggml_bit_menu();
// The names QuantizeOptions::gguf_type takes: ggml types and llama.cpp's file-type mixtures.
LLMQ_EXPORT std::vector<std::string> gguf_type_names();
// Whether `method` takes option group `o` (false for an unknown method).
LLMQ_EXPORT bool method_takes(const std::string& method, MethodOption o);
// Whether `method` cannot run without calibration data (llm.int8 takes it but does not need it).
LLMQ_EXPORT bool method_needs_calibration(const std::string& method);
// The methods that take `o`, in the order of quantize_methods().
LLMQ_EXPORT std::vector<std::string> methods_taking(MethodOption o);

struct LLMQ_EXPORT QuantizeOptions {
  // Every default of `method` (what `llmq quantize --method M` uses when no other flag is given):
  // e.g. spqr: groups of 16, 3-bit bilevel scales, damping 1, outlier threshold 0.2; smoothquant:
  // 8-bit per-channel; awq: 512-token calibration windows. InvalidArgument for an unknown method.
  static Result<QuantizeOptions> ForMethod(const std::string& method);
  // The rules the options must satisfy for their method (ranges, the options a method takes,
  // calibration data for calibrated methods); InvalidArgument with a message a user can act on.
  // quantize_checkpoint calls it first.
  Status Validate() const;

  // "rtn" (round to nearest), "gptq" (calibrated), "awq" (activation-aware scales and clipping,
  // then RTN), "awq+gptq" (the same scales and clipping, then GPTQ), "smoothquant" (W8A8 with
  // per-channel smoothing folded into the norms; needs bits 8 per-channel), "adpq" (zero-shot:
  // outliers by adaptive-LASSO soft-thresholding kept in fp16, RTN for the rest), "spqr" (GPTQ
  // with small groups, bilevel scales (spec.scale_bits) and Hessian-weighted fp16 outliers,
  // gptq.outlier_threshold), "oac" (GPTQ with output-adaptive Hessians from a backward pass of
  // the calibration text's cross-entropy), "spqr+oac" (SpQR with them) and "llm.int8" (zero-shot
  // int8 per-channel weights run with int8 activations and LLM.int8's outlier decomposition,
  // activation_outliers). All but rtn, adpq and llm.int8 are calibrated.
  std::string method = "rtn";
  QuantSpec spec;              // bits, group size, symmetric, scale dtype, MSE search
  // Quantize for llama.cpp (docs/GGUF.md): a ggml type ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
  // "q2_k", "q3_k", "q4_k", "q5_k", "q6_k") or a llama.cpp file type ("q3_k_s", "q3_k_m",
  // "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m"). Every decoder linear, the token embeddings
  // and the output head get the type llama.cpp's own quantizer gives that tensor for that name,
  // with its fallbacks for rows that are not whole blocks (a tensor falling back to f16 stays
  // float); linears are quantized by `method` with codes and scales exactly representable in
  // their blocks, the embeddings and head by RTN on their grid. `spec` is then not used, and
  // `llmq export gguf` copies the blocks. "" (default): llmq's own layout, `spec`.
  std::string gguf_type;
  // Per-linear specs by module name ("model.layers.0.mlp.down_proj"), overriding `spec`; filled
  // from gguf_type by quantize_checkpoint.
  std::map<std::string, QuantSpec> module_specs;
  const QuantSpec& SpecFor(const std::string& module) const {
    auto it = module_specs.find(module);
    return it == module_specs.end() ? spec : it->second;
  }
  CalibrationOptions calibration;
  GptqOptions gptq;
  AwqOptions awq;
  AdpqOptions adpq;
  OacOptions oac;
  BillmOptions billm;
  // SpQR: > 0 picks each linear's outlier threshold (bisection) so that its bits per weight,
  // outliers included, come as close to this budget as possible without exceeding it.
  // Methods taking MethodOption::kBitBudget (rtn, gptq, awq, awq+gptq, oac, adpq): > 0 picks each
  // linear's spec from bit_menu so that the written bits per weight of all linears together stay
  // within this budget with the least summed estimated loss (bit_sensitivity; a multiple-choice
  // knapsack, exact on the estimates); the choices become module_specs. With gguf_type the
  // menu holds ggml types and replaces llama.cpp's recipe for the linears (the token embeddings
  // and output head keep the recipe's types; general.file_type stays the named mixture's).
  double target_bits = 0.0;
  std::vector<QuantSpec> bit_menu;  // empty: default_bit_menu(spec), or default_ggml_bit_menu() with gguf_type
  BitSensitivity bit_sensitivity = BitSensitivity::kDefault;
  BitEstimate bit_estimate = BitEstimate::kRtn;
  // GPTQ: quantize inside a block in stages q/k/v -> o -> gate/up -> down, re-collecting the
  // Hessians after each stage so later stages see the earlier ones' error.
  bool true_sequential = false;
  // SmoothQuant migration strength: s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha).
  double alpha = 0.5;
  // Mark the output as W8A8: the runtime quantizes activations per token to int8 (rtn: W8A8
  // without smoothing; smoothquant sets it itself).
  bool int8_activations = false;
  // With int8 activations (a W8A8 method or int8_activations): LLM.int8's outlier decomposition
  // at run time (llmq/kernels.h), recorded in quantization_config.activation_outliers.
  // threshold > 0 enables it (llm.int8: 6.0); integer keeps the outliers as int8 tiles (integer
  // outliers) instead of fp32. `columns` is not taken here.
  ActivationOutlierOptions activation_outliers;
  // Keep finished blocks in <out>.llmq-partial beside the output and continue from them.
  bool resume = false;
  // Replace a non-empty output folder llmq wrote (it holds llmq_report.json or an llmq
  // quantization_config); with `force` as well, any folder.
  bool overwrite = false;
  bool force = false;
  uint64_t max_shard_bytes = 2ull << 30;  // output safetensors shard size
  ProgressCallback progress;   // optional
  // Optional: polled between calibration windows; returning true stops the run with
  // StatusCode::kCancelled (finished blocks stay on disk for resume).
  std::function<bool()> cancel;
};

struct LLMQ_EXPORT LayerReport {
  std::string module;
  int64_t rows = 0, cols = 0;
  double relative_error = 0.0;   // ||W - deq(Q)||_F / ||W||_F
  double bits_per_weight = 0.0;  // codes + scales + zeros (+ g_idx, outliers) per weight, as written
  double seconds = 0.0;
  // Calibrated methods only (negative when not applicable):
  double output_relative_error = -1.0;  // ||(W - deq(Q)) X||_F / ||W X||_F on the calibration inputs
  double gptq_loss = -1.0;              // GPTQ's objective, sum (w - q)^2 / U_jj^2 / 2
  double damp = -1.0;                   // relative damping used
  int damp_retries = 0;
  bool fell_back_to_rtn = false;
  int64_t dead_columns = 0;
  // AWQ only (negative when not applicable): the scaling site this linear belongs to (its
  // weights' input channels were multiplied by s = ...^alpha), the inspected module's output MSE
  // with the chosen scales and with none, and the mean clip (1 - max_val / absmax) over groups.
  double awq_alpha = -1.0;
  double awq_loss = -1.0, awq_loss_unscaled = -1.0;
  double awq_clip_shrink = -1.0;
  int64_t outliers = 0;  // weights kept in the sparse fp16 part
  int64_t activation_outlier_columns = 0;  // llm.int8 with calibration: input columns run outside int8
  double outlier_threshold = -1.0;  // SpQR: the relative threshold used (chosen with target_bits)
  double salient_fraction = -1.0;   // BiLLM: share of input columns binarized as salient (residual pairs)
  int row_pieces = 1;  // MPI: solved in this many row pieces on different ranks (GPTQ's costliest linear)
  // Bit budgets: the spec chosen for this linear and the loss the sensitivity estimated for it.
  std::string bit_choice;
  double estimated_loss = -1.0;
};

// What the calibration pass used.
struct LLMQ_EXPORT CalibrationReport {
  std::string data;
  int64_t nsamples = 0, seq_len = 0, tokens = 0;
  uint64_t seed = 0;
  int64_t resumed_blocks = 0;  // blocks taken from a previous run (--resume)
  uint64_t activation_bytes = 0;  // calibration activations kept in memory
  int ranks = 1;                  // MPI ranks the windows were spread over (llmq/distributed.h)
  // Wall time of the calibrated part (rank 0's), and the same split by what the process was doing:
  // reading float weights, windows through blocks (OAC: the backward passes), adding to Hessians
  // and statistics, MPI messages including waiting for other ranks, per-linear solves, writing
  // finished blocks; `other` is the rest (tokenizing, embeddings, propagating weights).
  double seconds = 0.0;
  struct PhaseSeconds {
    double load = 0.0, forward = 0.0, hessian = 0.0, exchange = 0.0, solve = 0.0, write = 0.0, other = 0.0;
  } phase_seconds;
  std::vector<PhaseSeconds> rank_phase_seconds;  // every rank's split, rank order (under MPI only)
};

struct LLMQ_EXPORT QuantizeReport {
  std::string method;
  QuantSpec spec;
  std::string input, output;
  std::vector<LayerReport> layers;
  bool calibrated = false;
  CalibrationReport calibration;  // when calibrated
  GptqOptions gptq;               // when method is "gptq" or "awq+gptq"
  AwqOptions awq;                 // when method is "awq" or "awq+gptq"
  AdpqOptions adpq;               // when method is "adpq"
  double target_bits = 0.0;       // when method is "spqr" or "spqr+oac"
  OacOptions oac;                 // when method is "oac", "spqr+oac" or "billm+oac"
  BillmOptions billm;             // when method is "billm" or "billm+oac"
  // Bit budgets (target_bits on a kBitBudget method): the sensitivity used, the menu, the bits per
  // weight the plan expected, its summed estimated loss and the time the sensitivity pass took.
  std::string bit_sensitivity;
  std::string bit_estimate;  // "rtn" or "gptq"
  std::vector<QuantSpec> bit_menu;
  double bit_plan_bits = 0.0, bit_plan_loss = 0.0, bit_plan_seconds = 0.0;
  double oac_backward_seconds = 0.0, oac_quantize_seconds = 0.0;  // OAC: time in the backward pass / the solves
  bool oac_linear_in_depth = false;  // OAC once: later blocks differentiated from kept gradients (OacOptions)
  double alpha = 0.0;             // when method == "smoothquant"
  bool int8_activations = false;  // the output runs with int8 activations (W8A8)
  ActivationOutlierOptions activation_outliers;  // their outlier decomposition (threshold 0: none)
  bool true_sequential = false;
  // With QuantizeOptions::gguf_type: the name, every quantized tensor's ggml type (Hugging Face
  // weight name -> "q4_k"; embeddings and head included) and the tensors that fell back
  // (name -> "q4_k -> q5_0", or "-> f16": kept float).
  std::string gguf_type;
  std::map<std::string, std::string> tensor_types;
  std::map<std::string, std::string> gguf_fallbacks;
  double bits_per_weight = 0.0;  // over all quantized linears
  uint64_t input_bytes = 0, output_bytes = 0;
  double seconds = 0.0;
  uint64_t peak_rss_bytes = 0;
  std::vector<std::string> unused_tensors;  // in the input but read by no part of the model (copied as they are)
  // The report as one JSON object (keys documented in README.md, "JSON report").
  std::string ToJson() const;
};

// Reads the float checkpoint in `input_folder`, quantizes every decoder linear with
// options.method and writes the llmq format to `output_folder` atomically (nothing
// is left there on failure). Embeddings, norms, biases and the LM head are copied.
LLMQ_EXPORT Result<QuantizeReport> quantize_checkpoint(const std::string& input_folder, const std::string& output_folder,
                                           const QuantizeOptions& options);

// Peak resident set size of this process so far, in bytes.
LLMQ_EXPORT uint64_t peak_rss_bytes();

}  // namespace llmq

#endif  // LLMQ_QUANTIZE_H_
