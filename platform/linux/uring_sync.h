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
// completion thread: once accepted, done is always called. Errors (then
// `fd` is still the caller's and done is never called): eopnotsupp (no
// ring), eagain (as many syncs in flight as the ring holds), enomem.
Error submit_fsync(FileId fd, SyncDone done) noexcept;

// Tests only: the function that submits the ring (io_uring_submit), so a
// test can make it fail; nullptr puts the real one back.
using SubmitFn = int (*)(void* ring);
void set_submit_for_tests(SubmitFn f) noexcept;

}  // namespace emmap::linux_uring
