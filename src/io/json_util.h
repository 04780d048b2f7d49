// Integers from untrusted JSON (internal). nlohmann's get<T>() converts a float such as 1e95 to an
// integer type with undefined behaviour (found by fuzz_tokenizer_json and fuzz_calibration), so
// readers of user files take integers through json_int, which throws json's own type_error (the
// readers already turn those into a Status naming the file) for anything that is not an integer
// in T's range.
#ifndef LLMQ_IO_JSON_UTIL_H_
#define LLMQ_IO_JSON_UTIL_H_

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

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

}  // namespace llmq::internal

#endif  // LLMQ_IO_JSON_UTIL_H_
