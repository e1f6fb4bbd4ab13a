// errno -> portable emmap::Errc, shared by every POSIX backend.
#pragma once

#include "error.h"

namespace emmap::posix {

Errc errc_from_errno(int e) noexcept;

// The last errno as an Error (keeps the raw value for diagnostics).
Error last_error() noexcept;

}  // namespace emmap::posix
