// The dense entries (dense.h) for avx512: dense_impl.h with Eigen's namespace renamed for this ISA.
#define LLMQ_DENSE_NS avx512
#define Eigen Eigen_avx512
#include "dense_impl.h"
