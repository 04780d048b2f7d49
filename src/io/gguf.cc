// GGUF v3 writer and reader. Little-endian throughout (x86-64 host); strings are u64 length +
// bytes without NUL; tensor data is laid out in info order, each blob padded with zeros to the
// alignment (32), the data section starting at the first aligned offset after the infos.
#include "io/gguf.h"

#include <cstring>
#include <fstream>
#include <set>
#include <type_traits>

#include "io/file_util.h"
#include "quant/ggml_blocks.h"

namespace llmq::internal {
namespace {

constexpr uint64_t kAlignment = 32;
uint64_t align_up(uint64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

template <typename T>
void put(std::string* s, T v) {
  s->append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_string(std::string* s, const std::string& v) {
  put<uint64_t>(s, v.size());
  s->append(v);
}

}  // namespace

const char* ggml_type_id_name(int type) {
  if (type == kGgmlF32) return "f32";
  if (type == kGgmlF16) return "f16";
  for (const auto& i : ggml_types())
    if (int(i.type) == type) return i.name;
  return "unknown";
}

bool ggml_type_id_layout(int type, int64_t* block_elems, int64_t* block_bytes) {
  if (type == kGgmlF32 || type == kGgmlF16) {
    *block_elems = 1;
    *block_bytes = type == kGgmlF32 ? 4 : 2;
    return true;
  }
  for (const auto& i : ggml_types())
    if (int(i.type) == type) {
      *block_elems = i.block_elems;
      *block_bytes = i.block_bytes;
      return true;
    }
  return false;
}

namespace {

// A key's encoded type and value: the type id, then what put_value writes.
template <typename Fn>
std::pair<std::string, std::string> kv_entry(const std::string& key, GgufValueType type, Fn put_value) {
  std::string e;
  put<int32_t>(&e, int32_t(type));
  put_value(&e);
  return {key, std::move(e)};
}

template <typename T>
std::pair<std::string, std::string> kv_array(const std::string& key, GgufValueType elem, const std::vector<T>& v) {
  return kv_entry(key, GgufValueType::kArray, [&](std::string* e) {
    put<int32_t>(e, int32_t(elem));
    put<uint64_t>(e, v.size());
    for (const T& x : v) {
      if constexpr (std::is_same_v<T, std::string>) put_string(e, x);
      else put<T>(e, x);
    }
  });
}

}  // namespace

void GgufWriter::SetString(const std::string& key, const std::string& v) {
  kv_.push_back(kv_entry(key, GgufValueType::kString, [&](std::string* e) { put_string(e, v); }));
}
void GgufWriter::SetU32(const std::string& key, uint32_t v) {
  kv_.push_back(kv_entry(key, GgufValueType::kU32, [&](std::string* e) { put<uint32_t>(e, v); }));
}
void GgufWriter::SetI32(const std::string& key, int32_t v) {
  kv_.push_back(kv_entry(key, GgufValueType::kI32, [&](std::string* e) { put<int32_t>(e, v); }));
}
void GgufWriter::SetF32(const std::string& key, float v) {
  kv_.push_back(kv_entry(key, GgufValueType::kF32, [&](std::string* e) { put<float>(e, v); }));
}
void GgufWriter::SetBool(const std::string& key, bool v) {  // one byte, 0 or 1
  kv_.push_back(kv_entry(key, GgufValueType::kBool, [&](std::string* e) { put<int8_t>(e, v ? 1 : 0); }));
}
void GgufWriter::SetStrings(const std::string& key, const std::vector<std::string>& v) {
  kv_.push_back(kv_array(key, GgufValueType::kString, v));
}
void GgufWriter::SetF32s(const std::string& key, const std::vector<float>& v) {
  kv_.push_back(kv_array(key, GgufValueType::kF32, v));
}
void GgufWriter::SetI32s(const std::string& key, const std::vector<int32_t>& v) {
  kv_.push_back(kv_array(key, GgufValueType::kI32, v));
}

Status GgufWriter::AddTensor(const std::string& name, std::vector<int64_t> ne, int type, std::vector<uint8_t> data) {
  if (name.empty() || name.size() >= 64)
    return Status::InvalidArgument("GGUF tensor name '" + name + "' must have 1 to 63 bytes (ggml's GGML_MAX_NAME)");
  for (const auto& t : infos_)
    if (t.name == name) return Status::InvalidArgument("GGUF tensor '" + name + "' added twice");
  int64_t be = 0, bb = 0;
  if (!ggml_type_id_layout(type, &be, &bb)) return Status::InvalidArgument("unknown ggml type id " + std::to_string(type));
  if (ne.empty() || ne.size() > 4 || ne[0] % be != 0)
    return Status::InvalidArgument("GGUF tensor '" + name + "': " + std::to_string(ne.size()) +
                                   " dimensions or a row that is not a whole number of " + ggml_type_id_name(type) +
                                   " blocks");
  uint64_t bytes = uint64_t(ne[0] / be * bb);
  for (size_t i = 1; i < ne.size(); ++i) bytes *= uint64_t(ne[i]);
  if (bytes != data.size())
    return Status::InvalidArgument("GGUF tensor '" + name + "' needs " + std::to_string(bytes) + " bytes, got " +
                                   std::to_string(data.size()));
  GgufTensorInfo info;
  info.name = name;
  info.ne = std::move(ne);
  info.type = type;
  info.bytes = bytes;
  info.offset = infos_.empty() ? 0 : align_up(infos_.back().offset + infos_.back().bytes);
  infos_.push_back(std::move(info));
  data_.push_back(std::move(data));
  return Status::Ok();
}

std::string GgufWriter::Header() const {
  std::string h = "GGUF";
  put<uint32_t>(&h, 3);
  put<int64_t>(&h, int64_t(infos_.size()));
  put<int64_t>(&h, int64_t(kv_.size()));
  for (const auto& [key, value] : kv_) {
    put_string(&h, key);
    h += value;
  }
  for (const auto& t : infos_) {
    put_string(&h, t.name);
    put<uint32_t>(&h, uint32_t(t.ne.size()));
    for (int64_t n : t.ne) put<int64_t>(&h, n);
    put<int32_t>(&h, int32_t(t.type));
    put<uint64_t>(&h, t.offset);
  }
  h.resize(size_t(align_up(h.size())), '\0');
  return h;
}

uint64_t GgufWriter::FileBytes() const {
  uint64_t n = Header().size();
  if (!infos_.empty()) n += align_up(infos_.back().offset + infos_.back().bytes);
  return n;
}

Status GgufWriter::Write(const std::string& path) const {
  std::set<std::string> keys;
  for (const auto& kv : kv_)
    if (!keys.insert(kv.first).second) return Status::Internal("GGUF key '" + kv.first + "' set twice");
  const std::string header = Header();
  static const char zeros[kAlignment] = {};
  std::vector<Chunk> chunks = {{header.data(), header.size()}};
  for (size_t i = 0; i < infos_.size(); ++i) {
    chunks.push_back({data_[i].data(), data_[i].size()});
    const uint64_t pad = align_up(infos_[i].bytes) - infos_[i].bytes;
    if (pad) chunks.push_back({zeros, size_t(pad)});
  }
  return write_file_atomic(path, chunks);
}

namespace {

// Bounds-checked little-endian cursor over the file bytes.
class Cursor {
 public:
  Cursor(const uint8_t* d, size_t n, const std::string& where) : d_(d), n_(n), where_(where) {}
  template <typename T>
  Status Get(T* v) {
    if (n_ - pos_ < sizeof(T)) return Truncated();
    std::memcpy(v, d_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status GetString(std::string* s) {
    uint64_t len = 0;
    LLMQ_RETURN_IF_ERROR(Get(&len));
    if (len > n_ - pos_) return Truncated();
    s->assign(reinterpret_cast<const char*>(d_ + pos_), size_t(len));
    pos_ += size_t(len);
    return Status::Ok();
  }
  Status Truncated() const {
    return Status::Corruption(where_ + ": GGUF header is truncated at byte " + std::to_string(pos_));
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

 private:
  const uint8_t* d_;
  size_t n_, pos_ = 0;
  const std::string& where_;
};

size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: case GgufValueType::kI8: case GgufValueType::kBool: return 1;
    case GgufValueType::kU16: case GgufValueType::kI16: return 2;
    case GgufValueType::kU32: case GgufValueType::kI32: case GgufValueType::kF32: return 4;
    case GgufValueType::kU64: case GgufValueType::kI64: case GgufValueType::kF64: return 8;
    default: return 0;
  }
}

// A numeric scalar of type t as (unsigned, signed, float) at the cursor.
Status read_number(Cursor& c, GgufValueType t, double* as_double, std::variant<uint64_t, int64_t, double, std::string>* v) {
  switch (t) {
#define LLMQ_GGUF_NUM(E, T, KIND)            \
  case GgufValueType::E: {                   \
    T x;                                     \
    LLMQ_RETURN_IF_ERROR(c.Get(&x));         \
    *as_double = double(x);                  \
    if (v) *v = KIND(x);                     \
    return Status::Ok();                     \
  }
    LLMQ_GGUF_NUM(kU8, uint8_t, uint64_t)
    LLMQ_GGUF_NUM(kI8, int8_t, int64_t)
    LLMQ_GGUF_NUM(kBool, int8_t, uint64_t)
    LLMQ_GGUF_NUM(kU16, uint16_t, uint64_t)
    LLMQ_GGUF_NUM(kI16, int16_t, int64_t)
    LLMQ_GGUF_NUM(kU32, uint32_t, uint64_t)
    LLMQ_GGUF_NUM(kI32, int32_t, int64_t)
    LLMQ_GGUF_NUM(kF32, float, double)
    LLMQ_GGUF_NUM(kU64, uint64_t, uint64_t)
    LLMQ_GGUF_NUM(kI64, int64_t, int64_t)
    LLMQ_GGUF_NUM(kF64, double, double)
#undef LLMQ_GGUF_NUM
    default: return Status::Corruption("not a numeric GGUF type");
  }
}

}  // namespace

Result<GgufFile> parse_gguf(const uint8_t* data, size_t size, const std::string& where) {
  return parse_gguf(data, size, size, where);
}

Result<GgufFile> parse_gguf(const uint8_t* data, size_t size, uint64_t file_size, const std::string& where) {
  GgufFile f;
  f.file_bytes = file_size;
  Cursor c(data, size, where);
  char magic[4];
  LLMQ_RETURN_IF_ERROR(c.Get(&magic));
  if (std::memcmp(magic, "GGUF", 4) != 0) return Status::Corruption(where + ": not a GGUF file (no 'GGUF' magic)");
  LLMQ_RETURN_IF_ERROR(c.Get(&f.version));
  if (f.version != 3)
    return Status::NotSupported(where + ": GGUF version " + std::to_string(f.version) + " (llmq reads version 3)");
  int64_t n_tensors = 0, n_kv = 0;
  LLMQ_RETURN_IF_ERROR(c.Get(&n_tensors));
  LLMQ_RETURN_IF_ERROR(c.Get(&n_kv));
  // Every entry takes at least 8 bytes of header: counts beyond the file are corrupt.
  if (n_tensors < 0 || n_kv < 0 || uint64_t(n_tensors) > size / 8 || uint64_t(n_kv) > size / 8)
    return Status::Corruption(where + ": impossible tensor or key count (" + std::to_string(n_tensors) + ", " +
                              std::to_string(n_kv) + ")");
  for (int64_t i = 0; i < n_kv; ++i) {
    std::string key;
    LLMQ_RETURN_IF_ERROR(c.GetString(&key));
    if (key.empty()) return Status::Corruption(where + ": empty metadata key");
    if (f.kv.count(key)) return Status::Corruption(where + ": duplicate metadata key '" + key + "'");
    int32_t type = 0;
    LLMQ_RETURN_IF_ERROR(c.Get(&type));
    GgufValue v;
    v.type = GgufValueType(type);
    if (type == int32_t(GgufValueType::kString)) {
      std::string s;
      LLMQ_RETURN_IF_ERROR(c.GetString(&s));
      v.scalar = std::move(s);
    } else if (type == int32_t(GgufValueType::kArray)) {
      int32_t elem = 0;
      uint64_t count = 0;
      LLMQ_RETURN_IF_ERROR(c.Get(&elem));
      LLMQ_RETURN_IF_ERROR(c.Get(&count));
      v.elem = GgufValueType(elem);
      if (elem == int32_t(GgufValueType::kString)) {
        if (count > c.remaining() / 8) return c.Truncated();
        v.strings.resize(size_t(count));
        for (auto& s : v.strings) LLMQ_RETURN_IF_ERROR(c.GetString(&s));
      } else {
        const size_t es = scalar_size(v.elem);
        if (es == 0)
          return Status::Corruption(where + ": key '" + key + "' is an array of GGUF type " + std::to_string(elem) +
                                    " (arrays hold numbers or strings)");
        if (count > c.remaining() / es) return c.Truncated();
        v.numbers.resize(size_t(count));
        for (auto& x : v.numbers) LLMQ_RETURN_IF_ERROR(read_number(c, v.elem, &x, nullptr));
      }
    } else {
      if (scalar_size(v.type) == 0)
        return Status::Corruption(where + ": key '" + key + "' has unknown GGUF type " + std::to_string(type));
      double ignored;
      LLMQ_RETURN_IF_ERROR(read_number(c, v.type, &ignored, &v.scalar));
    }
    f.keys.push_back(key);
    f.kv[key] = std::move(v);
  }
  uint64_t alignment = kAlignment;
  if (auto it = f.kv.find("general.alignment"); it != f.kv.end()) {
    if (it->second.type != GgufValueType::kU32)
      return Status::Corruption(where + ": general.alignment must be a uint32");
    alignment = std::get<uint64_t>(it->second.scalar);
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
      return Status::Corruption(where + ": general.alignment " + std::to_string(alignment) + " is not a power of two");
  }
  auto aligned = [&](uint64_t n) { return (n + alignment - 1) / alignment * alignment; };
  std::set<std::string> names;
  uint64_t expected = 0;
  for (int64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    LLMQ_RETURN_IF_ERROR(c.GetString(&t.name));
    if (t.name.empty() || t.name.size() >= 64)
      return Status::Corruption(where + ": tensor name '" + t.name + "' is empty or longer than 63 bytes");
    if (!names.insert(t.name).second) return Status::Corruption(where + ": duplicate tensor '" + t.name + "'");
    uint32_t n_dims = 0;
    LLMQ_RETURN_IF_ERROR(c.Get(&n_dims));
    if (n_dims == 0 || n_dims > 4)
      return Status::Corruption(where + ": tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions");
    t.ne.resize(n_dims);
    uint64_t elems = 1;
    for (auto& n : t.ne) {
      LLMQ_RETURN_IF_ERROR(c.Get(&n));
      if (n < 0 || (n > 0 && elems > (uint64_t(1) << 50) / uint64_t(n)))
        return Status::Corruption(where + ": tensor '" + t.name + "' has an impossible shape");
      elems *= uint64_t(n);
    }
    LLMQ_RETURN_IF_ERROR(c.Get(&t.type));
    LLMQ_RETURN_IF_ERROR(c.Get(&t.offset));
    int64_t be = 0, bb = 0;
    if (!ggml_type_id_layout(t.type, &be, &bb))
      return Status::NotSupported(where + ": tensor '" + t.name + "' has ggml type " + std::to_string(t.type) +
                                  ", which llmq does not read (f32, f16, q4_0..q8_0, q2_k..q6_k)");
    if (t.ne[0] % be != 0)
      return Status::Corruption(where + ": tensor '" + t.name + "' has " + std::to_string(t.ne[0]) +
                                " elements per row, not a multiple of the " + ggml_type_id_name(t.type) +
                                " block size " + std::to_string(be));
    t.bytes = elems / uint64_t(be) * uint64_t(bb);
    if (t.offset != expected)
      return Status::Corruption(where + ": tensor '" + t.name + "' has offset " + std::to_string(t.offset) +
                                ", expected " + std::to_string(expected));
    expected = aligned(t.offset + t.bytes);
    f.tensors.push_back(std::move(t));
  }
  f.data_offset = aligned(c.pos());
  for (const auto& t : f.tensors)
    if (f.data_offset + t.offset + t.bytes > file_size)
      return Status::Corruption(where + ": tensor '" + t.name + "' data is not within the file (" +
                                std::to_string(file_size) + " bytes)");
  return f;
}

Result<GgufFile> read_gguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return Status::NotFound(path + ": cannot open (" + errno_text() + ")");
  const uint64_t size = uint64_t(in.tellg());
  // Only the header is read (not the tensor data): the first 4 MiB, more while it is truncated.
  for (uint64_t head = std::min<uint64_t>(size, 4 << 20);; head = std::min(size, head * 4)) {
    std::vector<uint8_t> bytes(static_cast<size_t>(head));
    in.seekg(0);
    if (!in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(head)))
      return Status::IOError(path + ": read failed");
    auto f = parse_gguf(bytes.data(), bytes.size(), size, path);
    if (f.ok() || head == size || f.status().message().find("truncated") == std::string::npos) return f;
  }
}

Result<std::vector<uint8_t>> read_gguf_tensor(const std::string& path, const GgufFile& f, const GgufTensorInfo& t) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open (" + errno_text() + ")");
  std::vector<uint8_t> out(size_t(t.bytes));
  in.seekg(std::streamoff(f.data_offset + t.offset));
  if (!in.read(reinterpret_cast<char*>(out.data()), std::streamsize(t.bytes)))
    return Status::IOError(path + ": reading tensor '" + t.name + "' failed");
  return out;
}

}  // namespace llmq::internal
