// Quantizes a small matrix through the installed llmq and checks the round trip.
#include <llmq/llmq.h>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  std::vector<float> w(8 * 64);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(float(i));
  llmq::QuantSpec spec;
  spec.bits = 4;
  spec.group_size = 32;
  auto q = llmq::quantize_rtn(w.data(), 8, 64, spec);
  if (!q.ok()) {
    std::fprintf(stderr, "%s\n", q.status().ToString().c_str());
    return 1;
  }
  const double err = llmq::relative_error(w.data(), *q);
  std::printf("llmq %s: w4 g32 relative error %.4f\n", llmq::version(), err);
  return err > 0.0 && err < 0.2 ? 0 : 1;
}
