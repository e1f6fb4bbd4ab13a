// emmap — one error type for the whole core.
//
// An Error is either an OS error (normalised by the platform layer into one
// of the portable errno-like codes below) or one of the library's own codes.
// Every code has a stable lower-case name; the Erlang layer turns that name
// into the atom of `{error, Atom}`, so the names below are part of the API.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <new>
#include <type_traits>

namespace emmap {

// X(enum name, atom name). OS codes first (names as Erlang's file module
// spells them), then the library's own.
#define EMMAP_ERROR_CODES(X)                 \
  X(ok, "ok")                                \
  X(eperm, "eperm")                          \
  X(enoent, "enoent")                        \
  X(eintr, "eintr")                          \
  X(eio, "eio")                              \
  X(enxio, "enxio")                          \
  X(ebadf, "ebadf")                          \
  X(eagain, "eagain")                        \
  X(enomem, "enomem")                        \
  X(eacces, "eacces")                        \
  X(efault, "efault")                        \
  X(ebusy, "ebusy")                          \
  X(eexist, "eexist")                        \
  X(exdev, "exdev")                          \
  X(enodev, "enodev")                        \
  X(enotdir, "enotdir")                      \
  X(eisdir, "eisdir")                        \
  X(einval, "einval")                        \
  X(enfile, "enfile")                        \
  X(emfile, "emfile")                        \
  X(etxtbsy, "etxtbsy")                      \
  X(efbig, "efbig")                          \
  X(enospc, "enospc")                        \
  X(espipe, "espipe")                        \
  X(erofs, "erofs")                          \
  X(emlink, "emlink")                        \
  X(erange, "erange")                        \
  X(edeadlk, "edeadlk")                      \
  X(enametoolong, "enametoolong")            \
  X(enolck, "enolck")                        \
  X(enosys, "enosys")                        \
  X(eloop, "eloop")                          \
  X(eoverflow, "eoverflow")                  \
  X(eopnotsupp, "eopnotsupp")                \
  X(edquot, "edquot")                        \
  X(estale, "estale")                        \
  X(ecanceled, "ecanceled")                  \
  X(eownerdead, "eownerdead")                \
  X(enotrecoverable, "enotrecoverable")      \
  X(eunknown, "eunknown") /* an OS error without a portable name */ \
  /* the library's own codes */              \
  X(closed, "closed")         /* handle closed */                    \
  X(fixed_size, "fixed_size") /* resize refused (option or backend) */ \
  X(sigbus, "sigbus")         /* access hit a page lost to truncation */ \
  X(truncated, "truncated")   /* the file shrank under the mapping */ \
  X(full, "full")             /* no room left (queue, blocks) */     \
  X(corrupt, "corrupt")       /* a persistent format failed its checks */ \
  X(unsupported_version, "unsupported_version") /* a persistent format this build cannot read */ \
  X(eof, "eof")               /* position at or past the end */

enum class Errc : std::uint8_t {
#define EMMAP_X(id, name) id,
  EMMAP_ERROR_CODES(EMMAP_X)
#undef EMMAP_X
};

// The stable name of a code ("enoent", "fixed_size", ...).
constexpr std::string_view errc_name(Errc c) noexcept {
  switch (c) {
#define EMMAP_X(id, name) \
  case Errc::id:          \
    return name;
    EMMAP_ERROR_CODES(EMMAP_X)
#undef EMMAP_X
  }
  return "eunknown";
}

// An error value. `os_errno` keeps the raw OS value for diagnostics when the
// code came from the OS (0 otherwise); comparisons use `code` only.
class Error {
 public:
  constexpr Error() noexcept = default;
  constexpr Error(Errc code, int os_errno = 0) noexcept  // NOLINT: implicit on purpose
      : code_(code), os_errno_(os_errno) {}

  constexpr Errc code() const noexcept { return code_; }
  constexpr int os_errno() const noexcept { return os_errno_; }
  constexpr std::string_view name() const noexcept { return errc_name(code_); }
  constexpr bool ok() const noexcept { return code_ == Errc::ok; }
  constexpr explicit operator bool() const noexcept { return !ok(); }  // true = failed

  friend constexpr bool operator==(Error a, Error b) noexcept { return a.code_ == b.code_; }
  friend constexpr bool operator==(Error a, Errc b) noexcept { return a.code_ == b; }

 private:
  Errc code_ = Errc::ok;
  int os_errno_ = 0;
};

// A value or an error; the core never throws across its boundary.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : ok_(true) { new (&value_) T(std::move(value)); }  // NOLINT
  Result(Error e) : ok_(false), error_(e) { zero_trivial(); }          // NOLINT
  Result(Errc c) : ok_(false), error_(c) { zero_trivial(); }           // NOLINT
  Result(const Result& o) : ok_(o.ok_), error_(o.error_) {
    if (ok_) new (&value_) T(o.value_);
  }
  Result(Result&& o) noexcept(std::is_nothrow_move_constructible_v<T>)
      : ok_(o.ok_), error_(o.error_) {
    if (ok_) new (&value_) T(std::move(o.value_));
  }
  Result& operator=(Result&& o) noexcept(std::is_nothrow_move_constructible_v<T> &&
                                          std::is_nothrow_move_assignable_v<T>) {
    if (this == &o) return *this;
    if (ok_ && o.ok_) {
      value_ = std::move(o.value_);
    } else if (ok_) {
      value_.~T();
    } else if (o.ok_) {
      new (&value_) T(std::move(o.value_));
    }
    ok_ = o.ok_;
    error_ = o.error_;
    return *this;
  }
  Result& operator=(const Result& o) {
    if (this == &o) return *this;
    if (ok_ && o.ok_) {
      value_ = o.value_;
    } else if (ok_) {
      value_.~T();
    } else if (o.ok_) {
      new (&value_) T(o.value_);
    }
    ok_ = o.ok_;
    error_ = o.error_;
    return *this;
  }
  ~Result() {
    if (ok_) value_.~T();
  }

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }

 private:
  // An error holds no value; for plain types the storage is still given a
  // value, so copies of the union are never reads of indeterminate bytes.
  void zero_trivial() noexcept {
    if constexpr (std::is_trivially_default_constructible_v<T> && std::is_trivially_destructible_v<T>)
      new (&value_) T();
  }

 public:
  Error error() const noexcept { return error_; }
  T& value() & { return value_; }
  const T& value() const& { return value_; }
  T&& value() && { return std::move(value_); }
  T* operator->() { return &value_; }
  const T* operator->() const { return &value_; }
  T& operator*() & { return value_; }
  const T& operator*() const& { return value_; }
  T&& operator*() && { return std::move(value_); }

 private:
  bool ok_;
  Error error_;
  union {
    T value_;
  };
};

}  // namespace emmap
