// The dense entries (dense.h) for baseline: dense_impl.h with Eigen's namespace renamed for this ISA.
#define LLMQ_DENSE_NS baseline
#define Eigen Eigen_baseline
#include "dense_impl.h"
