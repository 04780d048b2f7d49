// A real llama.cpp as the judge of llmq's GGUF files (docs/GGUF.md): this program links the
// prebuilt libllama/libggml of the npm package @node-llama-cpp/linux-x64 (v0.5.0, headers from the
// matching source bundle of node-llama-cpp) and is built only when they are installed
// (npm install --omit=optional --ignore-scripts --prefix tests/oracle). Every command prints one JSON object on stdout.
//
//   llamacpp_client ppl <model.gguf> <ids.bin> <seq-len> [max-chunks]
//       perplexity with llmq's protocol: the int32 ids (BOS already in front) cut into
//       consecutive windows of seq-len tokens, each run from position 0 with an empty KV cache,
//       scored on its tokens 2..N.
//   llamacpp_client tokenize <model.gguf> <text-file> <out-ids.bin> [special]
//       llama.cpp's ids of the file (with the BOS llama.cpp adds), written as int32; with "special"
//       special tokens spelled in the text are matched (as Hugging Face tokenizers match added tokens).
//   llamacpp_client quantize <in.gguf> <out.gguf> <ftype-id>
//       llama.cpp's own quantizer (llama_model_quantize), no importance matrix.
//   llamacpp_client dequant <model.gguf> <tensor-name> <out.f32>
//       one tensor dequantized by ggml's own to_float (type traits), written as fp32.
//   llamacpp_client speed <model.gguf> <prompt-tokens> <decode-tokens> <threads>
//       prompt processing (one batch of prompt-tokens fixed ids) and greedy decoding of
//       decode-tokens after it, timed, with a persistent threadpool attached as llama-cli and
//       llama-bench attach one; KV cache in f32 like llmq's.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

namespace {

int fail(const std::string& msg) {
  std::fprintf(stderr, "llamacpp_client: %s\n", msg.c_str());
  return 1;
}

void quiet_log(enum ggml_log_level level, const char* text, void*) {
  if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

std::vector<int32_t> read_ids(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  std::vector<int32_t> ids(size_t(in.tellg()) / 4);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(ids.data()), std::streamsize(ids.size() * 4));
  return ids;
}

bool no_progress(float, void*) { return true; }

llama_model* load(const std::string& path) {
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  mp.progress_callback = no_progress;
  return llama_model_load_from_file(path.c_str(), mp);
}

int perplexity(const std::string& model_path, const std::string& ids_path, int seq_len, long max_chunks) {
  llama_model* model = load(model_path);
  if (model == nullptr) return fail(model_path + ": llama.cpp could not load it");
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = uint32_t(seq_len);
  cp.n_batch = uint32_t(seq_len);
  cp.n_ubatch = uint32_t(seq_len);
  cp.n_threads = cp.n_threads_batch = 2;
  cp.type_k = GGML_TYPE_F32;  // llmq keeps fp32 keys and values
  cp.type_v = GGML_TYPE_F32;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (ctx == nullptr) return fail("cannot create a llama.cpp context");
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  const std::vector<int32_t> ids = read_ids(ids_path);
  long chunks = long(ids.size()) / seq_len;
  if (max_chunks > 0 && chunks > max_chunks) chunks = max_chunks;
  double nll = 0.0;
  long predictions = 0;
  llama_batch batch = llama_batch_init(seq_len, 0, 1);
  for (long c = 0; c < chunks; ++c) {
    llama_memory_clear(llama_get_memory(ctx), true);
    batch.n_tokens = seq_len;
    for (int i = 0; i < seq_len; ++i) {
      batch.token[i] = ids[size_t(c * seq_len + i)];
      batch.pos[i] = i;
      batch.n_seq_id[i] = 1;
      batch.seq_id[i][0] = 0;
      batch.logits[i] = 1;
    }
    if (llama_decode(ctx, batch) != 0) return fail("llama_decode failed");
    for (int i = 0; i + 1 < seq_len; ++i) {
      const float* logits = llama_get_logits_ith(ctx, i);
      double mx = logits[0];
      for (int v = 1; v < n_vocab; ++v) mx = std::max(mx, double(logits[v]));
      double sum = 0.0;
      for (int v = 0; v < n_vocab; ++v) sum += std::exp(double(logits[v]) - mx);
      nll += std::log(sum) + mx - double(logits[ids[size_t(c * seq_len + i + 1)]]);
      ++predictions;
    }
  }
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  const double mean = predictions > 0 ? nll / double(predictions) : 0.0;
  std::printf("{\"perplexity\": %.10g, \"mean_nll\": %.10g, \"predictions\": %ld, \"chunks\": %ld, \"seq_len\": %d}\n",
              std::exp(mean), mean, predictions, chunks, seq_len);
  return 0;
}

int tokenize(const std::string& model_path, const std::string& text_path, const std::string& out_path, bool special) {
  llama_model_params mp = llama_model_default_params();
  mp.vocab_only = true;
  mp.progress_callback = no_progress;
  llama_model* model = llama_model_load_from_file(model_path.c_str(), mp);
  if (model == nullptr) return fail(model_path + ": llama.cpp could not load it");
  std::ifstream in(text_path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const llama_vocab* vocab = llama_model_get_vocab(model);
  std::vector<llama_token> ids(text.size() + 16);
  const int n = llama_tokenize(vocab, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), true, special);
  if (n < 0) return fail("llama_tokenize failed");
  ids.resize(size_t(n));
  std::ofstream out(out_path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(ids.data()), std::streamsize(ids.size() * 4));
  std::printf("{\"tokens\": %d}\n", n);
  llama_model_free(model);
  return 0;
}

int quantize(const std::string& in, const std::string& out, int ftype) {
  llama_model_quantize_params p = llama_model_quantize_default_params();
  p.ftype = llama_ftype(ftype);
  p.nthread = 2;
  if (llama_model_quantize(in.c_str(), out.c_str(), &p) != 0) return fail("llama_model_quantize failed");
  std::printf("{\"output\": \"%s\", \"ftype\": %d}\n", out.c_str(), ftype);
  return 0;
}

int dequant(const std::string& path, const std::string& name, const std::string& out_path) {
  ggml_context* ctx = nullptr;
  gguf_init_params gp = {false, &ctx};
  gguf_context* g = gguf_init_from_file(path.c_str(), gp);
  if (g == nullptr) return fail(path + ": ggml's GGUF reader refused it");
  ggml_tensor* t = ggml_get_tensor(ctx, name.c_str());
  if (t == nullptr) return fail(path + ": no tensor " + name);
  const int64_t n = ggml_nelements(t);
  std::vector<float> values(static_cast<size_t>(n));
  const ggml_type_traits* tr = ggml_get_type_traits(t->type);
  if (t->type == GGML_TYPE_F32) std::memcpy(values.data(), t->data, size_t(n) * 4);
  else if (tr->to_float != nullptr) tr->to_float(t->data, values.data(), n);
  else return fail("no to_float for " + std::string(ggml_type_name(t->type)));
  std::ofstream out(out_path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size() * 4));
  std::printf("{\"tensor\": \"%s\", \"type\": \"%s\", \"elements\": %lld}\n", name.c_str(), ggml_type_name(t->type),
              (long long)n);
  gguf_free(g);
  ggml_free(ctx);
  return 0;
}

int speed(const std::string& model_path, int prompt_tokens, int decode_tokens, int threads) {
  if (prompt_tokens < 1 || decode_tokens < 0 || threads < 1)
    return fail("speed: expected prompt-tokens >= 1, decode-tokens >= 0, threads >= 1");
  llama_model* model = load(model_path);
  if (model == nullptr) return fail(model_path + ": llama.cpp could not load it");
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = uint32_t(prompt_tokens + decode_tokens + 1);
  cp.n_batch = cp.n_ubatch = uint32_t(prompt_tokens);
  cp.n_threads = cp.n_threads_batch = threads;
  cp.type_k = GGML_TYPE_F32;
  cp.type_v = GGML_TYPE_F32;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (ctx == nullptr) return fail("cannot create a llama.cpp context");
  ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  using PoolNew = ggml_threadpool* (*)(ggml_threadpool_params*);
  using PoolFree = void (*)(ggml_threadpool*);
  auto pool_new = reinterpret_cast<PoolNew>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
  auto pool_free = reinterpret_cast<PoolFree>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
  if (pool_new == nullptr || pool_free == nullptr) return fail("the CPU backend has no threadpool functions");
  ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
  ggml_threadpool* pool = pool_new(&tpp);
  llama_attach_threadpool(ctx, pool, nullptr);
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  llama_batch batch = llama_batch_init(prompt_tokens, 0, 1);
  batch.n_tokens = prompt_tokens;
  for (int i = 0; i < prompt_tokens; ++i) {
    batch.token[i] = i == 0 ? llama_vocab_bos(llama_model_get_vocab(model)) : 100 + (i * 7919) % (n_vocab - 200);
    batch.pos[i] = i;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = i == prompt_tokens - 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (llama_decode(ctx, batch) != 0) return fail("llama_decode failed");
  const auto t1 = std::chrono::steady_clock::now();
  int pos = prompt_tokens;
  for (int s = 0; s < decode_tokens; ++s) {
    const float* logits = llama_get_logits_ith(ctx, -1);
    llama_token next = llama_token(std::max_element(logits, logits + n_vocab) - logits);
    batch.n_tokens = 1;
    batch.token[0] = next;
    batch.pos[0] = pos++;
    batch.n_seq_id[0] = 1;
    batch.seq_id[0][0] = 0;
    batch.logits[0] = 1;
    if (llama_decode(ctx, batch) != 0) return fail("llama_decode failed");
  }
  const auto t2 = std::chrono::steady_clock::now();
  const double ps = std::chrono::duration<double>(t1 - t0).count(), ds = std::chrono::duration<double>(t2 - t1).count();
  std::printf("{\"prompt_tokens\": %d, \"prompt_tokens_per_second\": %.6g, \"decode_steps\": %d, "
              "\"decode_tokens_per_second\": %.6g, \"threads\": %d}\n",
              prompt_tokens, prompt_tokens / ps, decode_tokens, ds > 0 ? decode_tokens / ds : 0.0, threads);
  llama_batch_free(batch);
  llama_detach_threadpool(ctx);
  llama_free(ctx);
  pool_free(pool);
  llama_model_free(model);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return fail("usage: llamacpp_client ppl|tokenize|quantize|dequant ...");
  llama_log_set(quiet_log, nullptr);
  ggml_backend_load_all_from_path(LLMQ_LLAMACPP_BINS);  // the CPU backend variants live beside the libraries
  llama_backend_init();
  const std::string cmd = argv[1];
  if (cmd == "ppl" && (argc == 5 || argc == 6))
    return perplexity(argv[2], argv[3], std::atoi(argv[4]), argc == 6 ? std::atol(argv[5]) : 0);
  if (cmd == "tokenize" && (argc == 5 || argc == 6))
    return tokenize(argv[2], argv[3], argv[4], argc == 6 && std::string(argv[5]) == "special");
  if (cmd == "quantize" && argc == 5) return quantize(argv[2], argv[3], std::atoi(argv[4]));
  if (cmd == "dequant" && argc == 5) return dequant(argv[2], argv[3], argv[4]);
  if (cmd == "speed" && argc == 6) return speed(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]));
  return fail("bad arguments (see the comment at the top of tests/llamacpp/llamacpp_client.cc)");
}
