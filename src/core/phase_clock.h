// Wall time of a calibrated quantization split by what the process was doing (internal).
//
// Why: a run spread over MPI ranks is only as fast as its slowest unsplit part, and the total
// alone cannot say which one (issue 22). Phases are exclusive: entering one pauses the enclosing
// phase, so they add up to the time spent inside any of them. Only the thread that opened the
// outermost phase records (the clock is thread-local; OpenMP workers never see the main
// thread's), and nothing but two clock reads happens per switch.
#ifndef LLMQ_CORE_PHASE_CLOCK_H_
#define LLMQ_CORE_PHASE_CLOCK_H_

#include <array>
#include <chrono>

namespace llmq::internal {

enum class Phase : int {
  kLoad,      // reading float weights of a block from the checkpoint
  kForward,   // calibration windows through a block
  kHessian,   // adding inputs to Hessians (and finishing them); AWQ/SmoothQuant statistics
  kExchange,  // MPI messages, including waiting for other ranks
  kSolve,     // the per-linear quantization (GPTQ solve, search of scales, ...)
  kWrite,     // writing finished blocks and output shards
  kCount
};

class PhaseClock {
 public:
  using Seconds = std::array<double, int(Phase::kCount)>;
  static PhaseClock& ThisThread() {
    thread_local PhaseClock clock;
    return clock;
  }
  // Seconds per phase since the last Reset.
  const Seconds& seconds() const { return seconds_; }
  void Reset() { seconds_.fill(0.0); }

 private:
  friend class ScopedPhase;
  using Clock = std::chrono::steady_clock;
  // Charges the time since the last switch to the running phase and makes `next` the running one.
  int Switch(int next) {
    const auto now = Clock::now();
    if (current_ >= 0) seconds_[size_t(current_)] += std::chrono::duration<double>(now - since_).count();
    const int previous = current_;
    current_ = next;
    since_ = now;
    return previous;
  }
  Seconds seconds_{};
  int current_ = -1;
  Clock::time_point since_;
};

// Runs `phase` for the lifetime of this object, then returns to the enclosing one.
class ScopedPhase {
 public:
  explicit ScopedPhase(Phase phase) : previous_(PhaseClock::ThisThread().Switch(int(phase))) {}
  ~ScopedPhase() { PhaseClock::ThisThread().Switch(previous_); }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  int previous_;
};

}  // namespace llmq::internal

#endif  // LLMQ_CORE_PHASE_CLOCK_H_
