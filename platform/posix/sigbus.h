// Survival of a file truncated under the map.
//
// When another process shrinks a mapped file, touching a page past the new
// end raises SIGBUS, which kills the VM. A process-wide handler knows the
// ranges emmap mapped: for a fault inside one, it replaces the page with a
// private zero-filled page, marks the range truncated, notes the fault for
// the faulting thread, and returns, so the instruction runs again on the
// new page. NIF reads, writes and atomics check the note after touching the
// map (no system call on that path) and answer {error, sigbus}; Erlang code
// reading a zero-copy binary over the lost range just reads zeros. Faults
// anywhere else go to the previous handler, or get the default action.
//
// Limits: at most kMaxGuarded ranges are watched at once (more maps work,
// unguarded); a process that installs its own SIGBUS handler after emmap
// and does not chain to it takes the protection away.
#pragma once

#include <atomic>
#include <cstddef>

namespace emmap::sigbus {

inline constexpr std::size_t kMaxGuarded = 16384;

// Installs the handler once per process (idempotent, thread-safe).
bool install() noexcept;

// Watches [base, base+len); a fault there sets *truncated. Returns a slot
// to pass to unguard(), or -1 when every slot is taken.
int guard(void* base, std::size_t len, std::atomic<bool>* truncated) noexcept;
void unguard(int slot) noexcept;

}  // namespace emmap::sigbus
