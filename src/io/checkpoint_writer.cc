// Atomic, sharded model-folder writer.
#include "io/checkpoint_writer.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/file_util.h"
#include "io/llmq_format.h"
#include "llmq/checkpoint.h"

namespace llmq::internal {
namespace fs = std::filesystem;

namespace {
std::string shard_tmp_name(size_t i) { return "shard-" + std::to_string(i) + ".tmp"; }
std::string shard_final_name(size_t i, size_t n) {
  if (n == 1) return "model.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}
}  // namespace

bool written_by_llmq(const std::string& folder) {
  std::error_code ec;
  if (fs::is_regular_file(fs::path(folder) / "llmq_report.json", ec)) return true;
  auto text = read_text_file((fs::path(folder) / "config.json").string());
  if (!text.ok()) return false;
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  return !j.is_discarded() && j.is_object() && j.contains("quantization_config") &&
         j["quantization_config"].is_object() && j["quantization_config"].value("quant_method", "") == kLlmqQuantMethod;
}

namespace {

// Why `out` (existing, not empty) may not be replaced under `replace`, or "" when it may.
std::string refusal(const fs::path& out, ReplacePolicy replace) {
  std::error_code ec;
  if (!fs::exists(out, ec) || (fs::is_directory(out, ec) && fs::is_empty(out, ec))) return "";
  if (replace == ReplacePolicy::kNever) return "output folder exists and is not empty (pass --overwrite to replace it)";
  if (replace == ReplacePolicy::kLlmqOutput && !written_by_llmq(out.string()))
    return "output folder exists and was not written by llmq (no llmq_report.json, no llmq quantization_config); "
           "--overwrite replaces only llmq outputs: pass --force as well to replace it anyway";
  return "";
}

}  // namespace

Result<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Create(const std::string& out_dir, ReplacePolicy replace,
                                                                   uint64_t max_shard_bytes, const std::string& input_dir) {
  std::unique_ptr<CheckpointWriter> w(new CheckpointWriter());
  std::error_code ec;
  fs::path out = fs::absolute(fs::path(out_dir), ec).lexically_normal();
  if (out.has_filename() == false) out = out.parent_path();
  if (!input_dir.empty()) {
    // Real paths (symbolic links resolved; the output need not exist yet).
    const fs::path in_real = fs::weakly_canonical(fs::absolute(input_dir), ec);
    const fs::path out_real = fs::weakly_canonical(out, ec);
    auto within = [](const fs::path& inner, const fs::path& outer) {  // inner is outer or below it
      std::string i = inner.string(), o = outer.string();
      if (o.size() > 1 && o.back() == '/') o.pop_back();
      return i == o || o == "/" || i.rfind(o + "/", 0) == 0;
    };
    if (within(out_real, in_real))
      return Status::InvalidArgument(out_dir + ": the output is the input folder " + input_dir +
                                     " or inside it; write the output somewhere else");
    if (within(in_real, out_real))
      return Status::InvalidArgument(out_dir + ": the output folder holds the input " + input_dir +
                                     "; replacing it would delete the input. Write the output somewhere else");
  }
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec)) return Status::InvalidArgument(out_dir + ": exists and is not a folder");
    if (const std::string why = refusal(out, replace); !why.empty()) return Status::InvalidArgument(out_dir + ": " + why);
  }
  const fs::path parent = out.parent_path();
  if (!fs::is_directory(parent, ec)) return Status::NotFound(out_dir + ": parent folder " + parent.string() + " does not exist");
  w->out_ = out.string();
  // Temporary folders of earlier runs for this output whose process is gone (killed, crashed): removed.
  const std::string stale_prefix = "." + out.filename().string() + ".llmq-tmp-";
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(stale_prefix, 0) != 0) continue;
    const std::string pid = name.substr(stale_prefix.size());
    if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(pid_t(std::stol(pid)), 0) != 0 && errno == ESRCH) fs::remove_all(e.path(), ec);
  }
  w->tmp_ = (parent / (stale_prefix + std::to_string(::getpid()))).string();
  fs::remove_all(w->tmp_, ec);
  if (!fs::create_directory(w->tmp_, ec))
    return Status::IOError(out_dir + ": cannot create output folder in " + parent.string() + " (" + ec.message() + ")");
  w->replace_ = replace;
  w->max_shard_bytes_ = max_shard_bytes;
  return w;
}

CheckpointWriter::~CheckpointWriter() {
  if (data_fd_ >= 0) ::close(data_fd_);
  if (!committed_ && !tmp_.empty()) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

namespace {

Status write_all(int fd, const void* data, size_t size, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(path + ": write failed: " + errno_text());
    }
    p += n;
    size -= size_t(n);
  }
  return Status::Ok();
}

}  // namespace

Status CheckpointWriter::Add(TensorToWrite tensor) {
  const std::string data_path = (fs::path(tmp_) / (shard_tmp_name(shard_names_.size()) + ".data")).string();
  uint64_t numel = 1;
  for (int64_t d : tensor.shape) numel *= uint64_t(d);
  if (numel * dtype_size(tensor.dtype) != tensor.bytes.size())
    return Status::InvalidArgument("tensor '" + tensor.name + "': byte count does not match its shape");
  for (const auto& t : pending_)
    if (t.name == tensor.name) return Status::InvalidArgument("tensor '" + tensor.name + "' written twice");
  if (data_fd_ < 0) {
    data_fd_ = ::open(data_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (data_fd_ < 0) return Status::IOError(data_path + ": cannot create: " + errno_text());
  }
  LLMQ_RETURN_IF_ERROR(write_all(data_fd_, tensor.bytes.data(), tensor.bytes.size(), data_path));
  pending_.push_back({tensor.name, tensor.dtype, tensor.shape, buffered_, tensor.bytes.size()});
  buffered_ += tensor.bytes.size();
  if (buffered_ >= max_shard_bytes_) return FlushShard();
  return Status::Ok();
}

// The shard = 8-byte header length + header + the data file, copied in 8 MiB pieces.
Status CheckpointWriter::FlushShard() {
  if (pending_.empty()) return Status::Ok();
  const std::string path = (fs::path(tmp_) / shard_tmp_name(shard_names_.size())).string();
  const std::string data_path = path + ".data";
  if (::close(data_fd_) != 0) {
    data_fd_ = -1;
    return Status::IOError(data_path + ": close failed: " + errno_text());
  }
  data_fd_ = -1;
  const std::string header = safetensors_header(pending_, {{"format", "pt"}, {"producer", "llmq"}});
  const uint64_t len = header.size();
  const int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int in = ::open(data_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (out < 0 || in < 0) {
    if (out >= 0) ::close(out);
    if (in >= 0) ::close(in);
    return Status::IOError(path + ": cannot create the shard: " + errno_text());
  }
  Status st = write_all(out, &len, 8, path);
  if (st.ok()) st = write_all(out, header.data(), header.size(), path);
  std::vector<uint8_t> buf(8u << 20);
  while (st.ok()) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) st = Status::IOError(data_path + ": read failed: " + errno_text());
    if (n <= 0) break;
    st = write_all(out, buf.data(), size_t(n), path);
  }
  if (st.ok() && ::fsync(out) != 0) st = Status::IOError(path + ": flush failed: " + errno_text());
  ::close(in);
  if (::close(out) != 0 && st.ok()) st = Status::IOError(path + ": close failed: " + errno_text());
  ::unlink(data_path.c_str());
  LLMQ_RETURN_IF_ERROR(st);
  std::vector<std::string> names;
  for (const auto& t : pending_) names.push_back(t.name);
  shard_names_.push_back(std::move(names));
  pending_.clear();
  buffered_ = 0;
  return Status::Ok();
}

Status CheckpointWriter::Commit(const std::string& config_json, const std::string& copy_from,
                                const std::map<std::string, std::string>& extra_files) {
  LLMQ_RETURN_IF_ERROR(FlushShard());
  std::error_code ec;
  const size_t n = shard_names_.size();
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const fs::path from = fs::path(tmp_) / shard_tmp_name(i), to = fs::path(tmp_) / shard_final_name(i, n);
    total += fs::file_size(from, ec);
    fs::rename(from, to, ec);
    if (ec) return Status::IOError(to.string() + ": rename failed: " + ec.message());
    for (const auto& name : shard_names_[i]) weight_map[name] = shard_final_name(i, n);
  }
  if (n > 1) {
    nlohmann::ordered_json idx = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    LLMQ_RETURN_IF_ERROR(
        write_text_file_atomic((fs::path(tmp_) / "model.safetensors.index.json").string(), idx.dump(2) + "\n"));
  }
  LLMQ_RETURN_IF_ERROR(write_text_file_atomic((fs::path(tmp_) / "config.json").string(), config_json));
  for (const auto& [name, text] : extra_files)
    LLMQ_RETURN_IF_ERROR(write_text_file_atomic((fs::path(tmp_) / name).string(), text));
  for (const char* const* f = kTokenizerFiles; *f != nullptr; ++f) {
    const fs::path src = fs::path(copy_from) / *f;
    if (fs::exists(src, ec)) {
      fs::copy_file(src, fs::path(tmp_) / *f, fs::copy_options::overwrite_existing, ec);
      if (ec) return Status::IOError(src.string() + ": copy into the output folder failed: " + ec.message());
    }
  }
  // Move into place; an existing output is replaced only as the policy allows. The check runs
  // again here: a folder that appeared (or changed) at the output path during the run is
  // somebody's data.
  std::string old;
  if (const std::string why = refusal(out_, replace_); !why.empty())
    return Status::InvalidArgument(out_ + ": appeared (or changed) during the run; nothing was replaced: the " + why);
  if (fs::exists(out_, ec)) {
    old = out_ + ".llmq-old-" + std::to_string(::getpid());
    fs::rename(out_, old, ec);
    if (ec) return Status::IOError(out_ + ": cannot move the existing folder aside: " + ec.message());
  }
  fs::rename(tmp_, out_, ec);
  if (ec) {
    std::error_code ec2;
    if (!old.empty()) fs::rename(old, out_, ec2);
    return Status::IOError(out_ + ": cannot move the finished output into place: " + ec.message());
  }
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
  return Status::Ok();
}

}  // namespace llmq::internal
