// One process-wide background thread for work that must not run on the
// caller's thread (asynchronous sync where the platform has no async path).
#pragma once

#include <chrono>
#include <functional>

namespace emmap {

// Queues `work`; it runs soon, in order, on the background thread. Returns
// false when out of memory (the work is not queued).
bool run_in_background(std::function<void()> work) noexcept;
// The same, no sooner than `delay` from now (a timer; work due at once
// goes first).
bool run_in_background_after(std::chrono::milliseconds delay, std::function<void()> work) noexcept;

}  // namespace emmap
