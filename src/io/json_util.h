// Integers from untrusted JSON (internal). nlohmann's get<T>() converts a float such as 1e95 to an
// integer type with undefined behaviour (found by fuzz_tokenizer_json and fuzz_calibration), so
// readers of user files take integers through json_int, which throws json's own type_error (the
// readers already turn those into a Status naming the file) for anything that is not an integer
// in T's range.
#ifndef LLMQ_IO_JSON_UTIL_H_
#define LLMQ_IO_JSON_UTIL_H_

#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace llmq::internal {

template <typename T>
T json_int(const nlohmann::json& v) {
  using L = std::numeric_limits<T>;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= uint64_t(L::max())) return T(u);
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= int64_t(L::min()) && (i < 0 || uint64_t(i) <= uint64_t(L::max()))) return T(i);
  }
  throw nlohmann::json::type_error::create(302, "expected an integer in [" + std::to_string(L::min()) + ", " +
                                                    std::to_string(L::max()) + "], got " + v.dump(),
                                           &v);
}

// Bytes for another process (MPI ranks): an 8-byte little-endian length, a JSON header of that
// length, then `payload`.
inline std::vector<uint8_t> json_framed(const std::string& header, const std::vector<uint8_t>& payload = {}) {
  std::vector<uint8_t> out(8 + header.size());
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

// The header of json_framed bytes (discarded JSON when the bytes are too short or not JSON) and
// where the payload starts.
inline std::pair<nlohmann::json, size_t> json_unframed(const std::vector<uint8_t>& bytes) {
  uint64_t n = 0;
  if (bytes.size() < 8 || (std::memcpy(&n, bytes.data(), 8), n > bytes.size() - 8))
    return {nlohmann::json(nlohmann::json::value_t::discarded), bytes.size()};
  return {nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + int64_t(n), nullptr, false), size_t(8 + n)};
}

}  // namespace llmq::internal

#endif  // LLMQ_IO_JSON_UTIL_H_
