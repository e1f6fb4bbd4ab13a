// Asynchronous durable sync through io_uring (IORING_OP_FSYNC with
// IORING_FSYNC_DATASYNC): one ring per process, submissions serialised by
// a mutex, completions delivered by one thread. Built only with liburing
// (HAVE_LIBURING, Meson option io_uring).
#pragma once

#include "backend.h"

namespace emmap::linux_uring {

// True when the ring could be set up (kernel 5.1+, not blocked by seccomp
// or io_uring_disabled); decided on first use.
bool available() noexcept;

// Takes ownership of `fd` (closed when done) and calls done(result) from the
// completion thread. Errors: eopnotsupp (no ring), eagain (ring full).
Error submit_fsync(FileId fd, SyncDone done) noexcept;

}  // namespace emmap::linux_uring
