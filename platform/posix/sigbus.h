// Survival of faults inside emmap's own address ranges.
//
// SIGBUS comes from a page past the end of a file that shrank under the
// map (another process truncated it), or from a hardware memory error
// (si_code BUS_MCEERR_AR/AO, which persistent-memory users meet). SIGSEGV
// inside a range of ours comes from a hole: a failed MAP_FIXED call may
// unmap its range before failing (Linux before 6.12), and an old zero-copy
// view may still point there. Either would kill the VM.
//
// A process-wide handler knows the ranges emmap reserved. For a fault
// inside one it puts a private zero-filled page at the faulting address,
// notes the kind of fault on the faulting thread (t_fault: lost page,
// hardware error, hole), marks the range truncated for a lost page, and
// returns, so the instruction runs again on the new page. (emmap's own
// shrinks make the tail zero pages before the file shrinks, so no view of
// ours ever touches a page past the end because of them.) NIF reads,
// writes and atomics check the note after touching the map (no system call
// on that path) and answer {error, sigbus}, {error, eio} or {error,
// efault}; Erlang code reading a zero-copy binary there reads zeros. Faults
// anywhere else go to the previous handler, or get the default action.
//
// Limits: at most kMaxGuarded ranges are watched at once (more maps work,
// unguarded); a process that installs its own SIGBUS/SIGSEGV handler after
// emmap and does not chain to it takes the protection away.
#pragma once

#include <atomic>
#include <cstddef>

namespace emmap::sigbus {

inline constexpr std::size_t kMaxGuarded = 16384;

// Installs the handlers once per process (idempotent, thread-safe).
bool install() noexcept;

// Watches [base, base+len); a lost page there sets *truncated. Returns a
// slot to pass to unguard(), or -1 when every slot is taken.
int guard(void* base, std::size_t len, std::atomic<bool>* truncated) noexcept;
void unguard(int slot) noexcept;

}  // namespace emmap::sigbus
