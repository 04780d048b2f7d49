// The dense entries (dense.h) for avx2: dense_impl.h with Eigen's namespace renamed for this ISA.
#define LLMQ_DENSE_NS avx2
#define Eigen Eigen_avx2
#include "dense_impl.h"
