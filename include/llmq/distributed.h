// Calibration spread over the processes of an MPI job (`mpirun -np N llmq quantize ...`).
//
// When llmq was built with MPI (CMake finds it; -DLLMQ_MPI=OFF builds without) and this process
// was started by mpirun, distributed_start() joins the job. From then on quantize_checkpoint
// splits the calibration windows over the ranks: each rank runs its own windows through the
// current block, the inputs every Hessian needs are sent to one rank that sums them in window
// order, and the result goes to all ranks. Every rank must call quantize_checkpoint with the same
// arguments; only rank 0 writes (the output, the block store for --resume) and its report is the
// run's. The output is the same bytes for any number of ranks and threads (docs/DESIGN.md,
// "Determinism"). A rank that fails ends the whole job (distributed_abort); one that dies is
// noticed by mpirun, which ends the others.
//
// Without mpirun, or in a build without MPI, there is one process and nothing changes.
#ifndef LLMQ_DISTRIBUTED_H_
#define LLMQ_DISTRIBUTED_H_

#include "llmq/export.h"
#include "llmq/status.h"

namespace llmq {

// Whether this build of llmq can run under mpirun.
LLMQ_EXPORT bool distributed_built();
// Joins the MPI job when started by mpirun (MPI_Init_thread; `argc`/`argv` as main got them,
// may be null); does nothing otherwise. Call once, before the first quantize_checkpoint.
LLMQ_EXPORT Status distributed_start(int* argc, char*** argv);
// This process's rank (0 without MPI) and the number of ranks (1 without MPI).
LLMQ_EXPORT int distributed_rank();
LLMQ_EXPORT int distributed_size();
// Leaves the job (MPI_Finalize); safe to call when distributed_start did nothing.
LLMQ_EXPORT void distributed_stop();
// Ends every rank of the job with `exit_code` (MPI_Abort), or this process without MPI.
[[noreturn]] LLMQ_EXPORT void distributed_abort(int exit_code);

}  // namespace llmq

#endif  // LLMQ_DISTRIBUTED_H_
