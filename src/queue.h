// The persistent FIFO queue: format, commit protocol, recovery and the rules
// that keep acknowledged records through process deaths, power loss and
// several handles on one file. No syscalls here: memory comes from a
// Mapping, the cross-process locks and the file lock from the backend
// (the claim holder thread only asks getpid() whether it was forked).
//
// File format, version 2 (native byte order)
// -----------------------------------------
//   0    magic "EMMAPQUE"
//   8    version u32 (2), header size u32 (4096)
//   16   current u64: which state slot is live (0 or 1)
//   24   initial capacity u64 (what purges shrink back to)
//   32   layout u64: bumped, under the lock, before a queue operation
//        changes the file's size; every handle compares it with the value
//        it last mapped and follows the file when they differ
//   40   flags u64: 1 = a lock holder died, the state must be re-checked;
//        2 = strict: a handle with {sync, always | interval} used the file,
//        so every handle keeps durable records safe (see Durability);
//        4 = a sync failed: what the disk holds is unknown until the live
//        records are written and synced again (see I/O errors)
//   48   repairs u64: dead lock holders repaired (for the curious)
//   64   state slot 0 (96 bytes)    160 state slot 1 (96 bytes)
//   256  durable: a copy of the oldest state that stable storage may hold
//   512  the cross-process lock (128 bytes)
//   640  the claim lock (128 bytes): held, by the claiming process's holder
//        thread, for as long as a claim (try_pop) is out
//   768  the claim: token u64 (0: none), seq u64 of the claimed head
//   4096 data area: `capacity` bytes of records
//
// State: head, tail, wrap, capacity, count, pop_seq (seq of the head
// record), push_seq (seq of the next push), cut_seq (the first seq of the
// current epoch), last (offset of the newest record), commits (bumped by
// every commit), pop_epoch (epoch of the head record), epoch (the epoch new
// records get), crc32c of the above, 0.
// Records live in [head, tail) or, when wrapped (wrap != 0), in [head, wrap)
// then [0, tail).
//
// Record (8-byte aligned): u32 0x51520000|kind, u32 len, u64 seq, u32
// crc32c(kind word, len, seq, epoch, payload), u32 epoch, payload, zero
// padding. Sequence numbers are consecutive along the queue; epochs never
// decrease along it and the head's is exactly pop_epoch; a record from
// cut_seq on carries exactly `epoch`, one before it an older epoch.
//
// Epochs: every recovery (an open with no other handle on the file, or a
// lock holder's death) makes the records it keeps durable, then commits
// epoch + 1 starting at the cut, durably, before any record carries it.
// So one (epoch, seq) pair names one push for ever, and a record cut off
// by a recovery can never pass for a newer one after a second crash,
// wherever it lies.
//
// Commit protocol: every change writes the *other* state slot, then flips
// `current` with one 8-byte store, all under the robust lock. A push writes
// its record first and commits after, so a process killed at any instant
// leaves the old state or the new one.
//
// Durability (power loss), per handle (Options::durability):
//   never     nothing is forced to disk; a push survives process deaths.
//   always    before a push returns, [0, end of live data) is msync'ed after
//             its commit, inside the lock: the header and every record up
//             to the new tail are durable, whoever wrote them. A pop or purge
//             msyncs the header. A failed sync rolls the commit back.
//   interval  sync() runs every so often (Options::sync_interval_ms);
//             what was committed when it began is durable when it returns.
//             It syncs inside the lock: nothing changes while the kernel
//             writes pages back one at a time.
// On persistent memory (a map with flush/eadr persistence) every "sync"
// above is a flush of exactly the bytes concerned, no system call: a strict
// file's writers flush each record before the commit that lists it, a
// commit flushes its slot before `current`, and always/interval then flush
// only the header's commit lines (the records are on the media already).
// With always/interval in use on a file ("strict") every handle obeys:
//   - space is reused only when the durable state does not still hold a
//     record there (else the header is synced first: the durable copy
//     catches up);
//   - a grow that moves records syncs the moved bytes before committing.
// (A shrink needs no rule: it happens only to an empty queue, so it can
// only make pops durable early.)
//
// I/O errors: after a failed sync the kernel may have marked pages clean
// that never reached the disk, and a later sync would say ok. So a failed
// sync sets flag 4, and every handle's next locked step first rewrites
// (dirties) the header and every live record and syncs them again; until
// that succeeds every operation answers eio.
//
// Waiting: with Wait::briefly the queue's lock is waited for a short while
// (kBriefWaitMs), then ebusy: the Erlang layer retries from the process,
// so a stuck holder elsewhere never ties up the VM's dirty schedulers.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "mapping.h"

namespace emmap::queue {

inline constexpr std::uint64_t kHeaderSize = 4096;
inline constexpr std::uint64_t kLockOffset = 512;  // the cross-process lock (tests take it directly)
inline constexpr std::uint8_t kTerm = 1;            // payload is term_to_binary output
inline constexpr std::uint8_t kBinary = 2;          // payload is a raw binary
inline constexpr std::uint8_t kErlangTerm = 3;      // external term the caller decodes (compressed ones)
inline constexpr std::uint32_t kBriefWaitMs = 20;   // Wait::briefly on the queue's lock
// A record larger than this is checked (CRC32C) and handed out only where
// blocking is fine: with Wait::no, take() answers ebusy first.
inline constexpr std::uint64_t kLargeRecord = std::uint64_t{1} << 20;
inline constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 46;  // as a map's length

enum class Durability : std::uint8_t { never, interval, always };

struct Options {
  Durability durability = Durability::never;
  // With Durability::interval: sync() runs every this many ms on the core's
  // background thread, for as long as the handle is open (0: only when
  // the owner calls sync()).
  std::uint32_t sync_interval_ms = 0;
  bool fixed_size = false;   // push answers full instead of growing the file
  bool auto_unlink = false;  // the last handle to let go removes the file
};

struct Item {
  std::uint8_t kind;
  std::string data;
};

struct OpenReport {
  bool initialised = false;  // a new queue was written
  bool recovered = false;    // no other handle had the file: every record was re-checked
  std::uint64_t dropped = 0;  // live records found corrupt and cut off
  std::uint64_t count = 0;    // items in the queue
};

// A snapshot of the queue's state (under the lock).
struct Stats {
  std::uint64_t count = 0;
  std::uint64_t head = 0;         // file offset of the oldest record (of the data area when empty)
  std::uint64_t tail = 0;         // file offset where the next record goes
  std::uint64_t capacity = 0;     // bytes of ring
  std::uint64_t used = 0;         // bytes the live records take
  std::uint64_t epoch = 0;        // bumped by every recovery
  std::uint64_t repairs = 0;      // dead lock holders repaired over the file's life
  bool strict = false;            // a handle with {sync, always | interval} has used the file
  std::uint64_t syncs = 0;        // sync() calls of this handle that completed
};

enum class Take : std::uint8_t {
  pop,            // remove the oldest item
  peek,           // read it, leave it
  pop_and_purge,  // remove it; an emptied queue gives its space back
  peek_back,      // read the newest item, leave it
};

// Receives an item while it is still in the map, under the lock: copy or
// decode it there. Any answer but Errc::ok (out of memory, undecodable,
// too big for where the caller runs) leaves the item queued, and take()
// returns that error.
using Visitor = Errc (*)(void* ctx, std::uint8_t kind, const char* data, std::size_t len);

// One handle on a queue file. Thread-safe; several handles (in this or
// other processes) may use one file at once.
class Queue {
 public:
  // Formats a new (all-zero) file with `initial_capacity` bytes of data
  // area, or checks an existing queue. When no other handle has the file
  // open, the lock is renewed and every record re-checked (recovery).
  // The Mapping must be a shared, writable map of the whole file, and may
  // carry one Queue at a time. Errors: corrupt (not a queue),
  // unsupported_version, einval (anonymous or private map, a map that
  // already carries a queue, capacity beyond kMaxCapacity), eacces
  // (read-only map), resize and sync errors.
  static Result<std::shared_ptr<Queue>> open(std::shared_ptr<Mapping> m, std::uint64_t initial_capacity,
                                             const Options& options) noexcept;

  ~Queue();
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  const OpenReport& report() const noexcept { return report_; }
  const Options& options() const noexcept { return options_; }
  Mapping& mapping() const noexcept { return *map_; }

  // Every call below also fails with ebusy when called with Wait::no and
  // it would have to block (lock held elsewhere, a resize, a sync, a
  // recovery); the caller then retries where blocking is fine.

  // Appends one item. Grows the file when full unless fixed_size.
  // Errors: full, einval (item larger than 4 GiB - 1), corrupt, closed,
  // efbig/enospc (growth), eio (sync).
  Error push(std::uint8_t kind, const void* data, std::size_t len, Wait w = Wait::yes) noexcept;

  // Hands the oldest item to `visit`; with Take::pop(_and_purge) removes it.
  // Returns false when the queue was empty. Errors: corrupt, closed, eio,
  // and whatever visit answered.
  Result<bool> take(Take how, Visitor visit, void* ctx, Wait w = Wait::yes) noexcept;
  // The same, copying the item out; nullopt when empty.
  Result<std::optional<Item>> take(Take how, Wait w = Wait::yes) noexcept;

  // Reading the queue in place, for folds: the items from sequence number
  // `from.seq` on (from the head when that one was popped meanwhile),
  // oldest first, at most `max` of them, each handed to `visit` with its
  // position. `from.pos` says where the caller expects that item (a hint,
  // checked; 0 with seq 0 means "from the head"). `next` is where to go on;
  // `more` is false when the newest item was visited.
  struct ScanPos {
    std::uint64_t seq = 0, pos = 0;
  };
  struct ScanResult {
    ScanPos next;
    bool more = false;
  };
  using ScanVisitor = Errc (*)(void* ctx, ScanPos at, std::uint8_t kind, const char* data, std::size_t len);
  Result<ScanResult> scan(ScanPos from, std::size_t max, ScanVisitor visit, void* ctx, Wait w = Wait::yes) noexcept;

  Result<std::uint64_t> length(Wait w = Wait::yes) noexcept;
  Result<Stats> stats(Wait w = Wait::yes) noexcept;

  // Drops every item and shrinks the file back to the initial capacity.
  // With `only_if_empty`, does that only to an empty queue: the answer says
  // whether it did (a queue with items is left as it is).
  Error purge(Wait w = Wait::yes) noexcept;
  Result<bool> purge(bool only_if_empty, Wait w) noexcept;

  // ---- two-step pops: claim the head, then commit or release --------------
  // claim() hands the head item to `visit` and leaves it in the queue,
  // claimed: until the claim is committed (the item is popped) or released
  // (it stays at the head), no pop or purge of any handle, in any process,
  // takes it; they answer ebusy, and so does claim() while another claim is
  // out. A claim is held by a process-wide holder thread through a robust
  // lock in the header, so the death of the claiming process (or dropping
  // the Claim) voids it: the item is the head again for everyone.
  // Returns nullptr when the queue is empty.
  class Claim;
  Result<std::shared_ptr<Claim>> claim(Visitor visit, void* ctx, Wait w = Wait::yes) noexcept;
  // Pops the claimed item (with `purge`, an emptied queue gives its space
  // back) and ends the claim. Errors: as take(), estale (the claim was
  // released or voided).
  Error commit(Claim& c, bool purge, Wait w = Wait::yes) noexcept;
  // Ends the claim; the item stays at the head. The claim lock is let go
  // of on the holder thread (microseconds: it never blocks), so a new
  // claim can be had when this returns. Idempotent.
  static void release(Claim& c) noexcept;

  // Durable point for Durability::interval: what was committed when this
  // began is on stable storage when it returns. Errors: closed, eio.
  Error sync(Wait w = Wait::yes) noexcept;

  // Lets go of the file (the map is closed; other handles go on); with
  // auto_unlink the last handle removes it. Idempotent.
  void close() noexcept;

 private:
  struct Ctx;
  class Lock;
  Queue(std::shared_ptr<Mapping> m, const Options& o) noexcept : map_(std::move(m)), options_(o) {}

  template <typename F>
  Error locked(Wait w, F&& body) noexcept;
  template <typename F>
  std::optional<Error> fast(F&& body) noexcept;
  template <typename F>
  Error run(Wait w, F&& body) noexcept;

  Error setup_alone(std::uint64_t initial) noexcept;
  Result<bool> take_impl(Take how, Visitor visit, void* ctx, Wait w, const Claim* own) noexcept;
  Error push_body(Ctx& c, std::uint8_t kind, const void* data, std::uint32_t len) noexcept;
  // Closes the liveness descriptor; with auto_unlink, removes the file if
  // no other handle has it open.
  void let_go() noexcept;
  static void schedule_sync(std::weak_ptr<Queue> q, std::uint32_t ms) noexcept;

  std::shared_ptr<Mapping> map_;
  Options options_;
  OpenReport report_;
  std::atomic<FileId> live_fd_{kNoFile};  // holds a shared flock while this handle is open
  std::atomic<std::uint64_t> seen_layout_{~std::uint64_t{0}};  // the layout this handle's map matches
  std::atomic<std::uint64_t> syncs_{0};
};

}  // namespace emmap::queue
