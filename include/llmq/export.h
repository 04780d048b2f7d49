// LLMQ_EXPORT marks the public API: libllmq.so is built with hidden visibility, so only what
// carries it is visible to programs linking the library (internal code is reachable only from
// the static llmq_internal target that the tests and benchmarks link).
#ifndef LLMQ_EXPORT_H_
#define LLMQ_EXPORT_H_

#if defined(__GNUC__) || defined(__clang__)
#define LLMQ_EXPORT [[gnu::visibility("default")]]
#else
#define LLMQ_EXPORT
#endif

#endif  // LLMQ_EXPORT_H_
