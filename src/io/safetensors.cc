// safetensors reader (mmap + full header validation) and atomic writer.
#include "llmq/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "io/file_util.h"

namespace llmq {
namespace {

using nlohmann::json;

Status corrupt(const std::string& path, const std::string& what) { return Status::Corruption(path + ": " + what); }

// Multiplies shape dims with overflow detection.
bool checked_numel(const std::vector<int64_t>& shape, uint64_t* out) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d != 0 && n > UINT64_MAX / uint64_t(d)) return false;
    n *= uint64_t(d);
  }
  *out = n;
  return true;
}

}  // namespace

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr && file_size_ > 0) ::munmap(const_cast<uint8_t*>(map_), file_size_);
}

Result<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IOError(path + ": cannot open: " + internal::errno_text());
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::IOError(path + ": not a regular file");
  }
  f->file_size_ = uint64_t(st.st_size);
  if (f->file_size_ < 8) {
    ::close(fd);
    return corrupt(path, "file is " + std::to_string(f->file_size_) +
                             " bytes, too short for the 8-byte header length (truncated?)");
  }
  void* m = ::mmap(nullptr, f->file_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return Status::IOError(path + ": mmap failed: " + internal::errno_text());
  f->map_ = static_cast<const uint8_t*>(m);

  uint64_t header_len = 0;
  std::memcpy(&header_len, f->map_, 8);  // little-endian host (x86-64, aarch64)
  if (header_len > kMaxHeaderBytes)
    return corrupt(path, "header length " + std::to_string(header_len) + " exceeds the " +
                             std::to_string(kMaxHeaderBytes >> 20) + " MiB limit");
  if (header_len > f->file_size_ - 8)
    return corrupt(path, "header length " + std::to_string(header_len) + " is larger than the file (" +
                             std::to_string(f->file_size_) + " bytes; truncated?)");
  f->data_start_ = 8 + header_len;
  const uint64_t data_size = f->file_size_ - f->data_start_;

  // Parse, rejecting duplicate top-level names (nlohmann keeps the last one silently).
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1) {
      const std::string k = parsed.get<std::string>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(reinterpret_cast<const char*>(f->map_ + 8),
                         reinterpret_cast<const char*>(f->map_ + 8 + header_len), cb);
  } catch (const json::exception& e) {
    return corrupt(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) return corrupt(path, "tensor '" + duplicate + "' appears twice in the header");
  if (!header.is_object()) return corrupt(path, "header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return corrupt(path, "__metadata__ is not an object");
      for (auto m2 = v.begin(); m2 != v.end(); ++m2) {
        if (!m2.value().is_string()) return corrupt(path, "__metadata__ value '" + m2.key() + "' is not a string");
        f->metadata_[m2.key()] = m2.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      return corrupt(path, where + " needs dtype, shape and data_offsets");
    if (!v["dtype"].is_string()) return corrupt(path, where + ": dtype is not a string");
    auto dt = parse_dtype(v["dtype"].get<std::string>());
    if (!dt.ok()) return dt.status().WithContext(path + ": " + where);
    TensorInfo info;
    info.name = name;
    info.dtype = *dt;
    if (!v["shape"].is_array()) return corrupt(path, where + ": shape is not an array");
    for (const json& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        return corrupt(path, where + ": shape " + v["shape"].dump() + " has a non-integer or negative dimension");
      info.shape.push_back(d.get<int64_t>());
    }
    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      return corrupt(path, where + ": data_offsets must be two non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (e < b) return corrupt(path, where + ": data_offsets end " + std::to_string(e) + " is before begin " +
                                        std::to_string(b));
    if (e > data_size)
      return corrupt(path, where + ": byte range [" + std::to_string(b) + ", " + std::to_string(e) +
                               ") is outside the data section (" + std::to_string(data_size) + " bytes; truncated?)");
    uint64_t numel = 0;
    if (!checked_numel(info.shape, &numel) || numel > UINT64_MAX / dtype_size(info.dtype))
      return corrupt(path, where + ": shape " + shape_string(info.shape) + " overflows");
    if (numel * dtype_size(info.dtype) != e - b)
      return corrupt(path, where + ": byte range [" + std::to_string(b) + ", " + std::to_string(e) + ") is " +
                               std::to_string(e - b) + " bytes but shape " + shape_string(info.shape) + " x " +
                               dtype_name(info.dtype) + " needs " + std::to_string(numel * dtype_size(info.dtype)));
    info.offset = b;
    info.nbytes = e - b;
    f->tensors_.push_back(std::move(info));
  }
  std::sort(f->tensors_.begin(), f->tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
  });
  for (size_t i = 1; i < f->tensors_.size(); ++i) {
    const TensorInfo& a = f->tensors_[i - 1];
    const TensorInfo& b = f->tensors_[i];
    if (a.offset + a.nbytes > b.offset && b.nbytes > 0 && a.nbytes > 0)
      return corrupt(path, "tensors '" + a.name + "' and '" + b.name + "' overlap");
  }
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
  return std::shared_ptr<const SafetensorsFile>(std::move(f));
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Result<TensorView> SafetensorsFile::get(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) return Status::NotFound(path_ + ": no tensor named '" + name + "'");
  TensorView v;
  v.dtype = info->dtype;
  v.shape = info->shape;
  v.data = map_ + data_start_ + info->offset;
  v.owner = shared_from_this();
  return v;
}

namespace {

}  // namespace

std::string safetensors_header(const std::vector<TensorInfo>& tensors, const std::map<std::string, std::string>& metadata) {
  // nlohmann's default object is sorted by key; use ordered_json to keep the writer's order.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = m;
  }
  uint64_t off = 0;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes}}};
    off += t.nbytes;
  }
  std::string s = h.dump();
  while (s.size() % 8) s.push_back(' ');  // align the data section to 8 bytes
  return s;
}

void SafetensorsFile::ReleasePages(const TensorInfo& t) const {
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = (data_start_ + t.offset + page - 1) / page * page;  // whole pages inside the tensor
  const uint64_t end = (data_start_ + t.offset + t.nbytes) / page * page;
  if (end > begin) ::madvise(const_cast<uint8_t*>(map_) + begin, end - begin, MADV_DONTNEED);
}

Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second)
      return Status::InvalidArgument(path + ": tensor '" + t.name + "' written twice");
    uint64_t numel = 0;
    if (!checked_numel(t.shape, &numel) || numel * dtype_size(t.dtype) != t.bytes.size())
      return Status::InvalidArgument(path + ": tensor '" + t.name + "' has " + std::to_string(t.bytes.size()) +
                                     " bytes, which does not match shape " + shape_string(t.shape) + " x " +
                                     dtype_name(t.dtype));
  }
  std::vector<TensorInfo> infos;
  for (const auto& t : tensors) infos.push_back({t.name, t.dtype, t.shape, 0, t.bytes.size()});
  const std::string header = safetensors_header(infos, metadata);
  const uint64_t len = header.size();
  uint8_t len_bytes[8];
  std::memcpy(len_bytes, &len, 8);
  std::vector<internal::Chunk> chunks{{len_bytes, 8}, {header.data(), header.size()}};
  for (const auto& t : tensors) chunks.push_back({t.bytes.data(), t.bytes.size()});
  return internal::write_file_atomic(path, chunks);
}

}  // namespace llmq
