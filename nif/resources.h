// Resource types and their lifecycle.
//
// Three resource types, so that memory handed to Erlang outlives the handle:
//
//   HandleRes  one per emmap:open/2,4 (the `data` of #file_descriptor{}).
//              Owns the core Mapping, the file position and a copy of the
//              open options for info/1.
//   RegionRes  one per generation of address space that a `direct` binary
//              has pointed into. Owns a shared_ptr<Region>; every
//              zero-copy binary holds a reference on it (enif_make_resource_binary),
//              so the memory stays mapped through close and resize until
//              the last such binary is garbage collected.
//   QueueRes   one per emmap_queue:open/3 (see below).
//
// Handle lifecycle (a state machine kept by the core Mapping):
//
//   open --close/1 (dirty I/O)--> closed --GC--> destroyed
//     \--------------------GC (reaper thread)-----^
//
// In `open` every call works; in `closed` every call answers {error, closed}
// (close itself is idempotent). The core's AccessGate makes close wait for
// accesses in flight, so a racing pread never reads unmapped memory.
// Destructors never block a normal scheduler on a large munmap: they hand
// the last reference to the reaper thread.
#pragma once

#include <erl_nif.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "atoms.h"
#include "error.h"
#include "mapping.h"
#include "queue.h"
#include "timeslice.h"

namespace emmap::nif {

inline constexpr int kErrcCount = static_cast<int>(Errc::eof) + 1;

// Drops references on a thread of its own: munmap of a large map, or the
// last close of a file, can take milliseconds.
class Reaper {
 public:
  Reaper();
  ~Reaper();  // joins: called from unload, before the library goes away
  void drop(std::shared_ptr<void> p);

 private:
  void run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<void>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

struct Priv {
  Atoms atoms;
  ERL_NIF_TERM errc[kErrcCount];
  ErlNifResourceType* handle_type = nullptr;
  ErlNifResourceType* region_type = nullptr;
  ErlNifResourceType* queue_type = nullptr;
  ErlNifResourceType* claim_type = nullptr;
  Reaper reaper;
  Timeslice timeslice;  // charges normal-scheduler calls by the time they take
};

// What the open options say beyond the core's OpenOptions.
struct HandleFlags {
  bool direct = false;  // reads return binaries that point into the map
  bool debug = false;   // emmap.erl reports open/close/resize through logger
  bool nolock = false;  // accepted for compatibility; the access gate stays (reported as ignored)
};

struct RegionRes {
  std::shared_ptr<Region> region;
};

// One per emmap_queue:open/3: the queue handle over a HandleRes's map. Its
// destructor lets go of the file lock that says "a handle is open".
struct QueueRes {
  std::shared_ptr<queue::Queue> q;
};

// One per claimed head (emmap_queue:try_pop/2 and pop/3): its destructor
// ends the claim, so a process that dies mid-Fun leaves the item queued.
struct ClaimRes {
  std::shared_ptr<queue::Queue> q;
  std::shared_ptr<queue::Queue::Claim> claim;
};

struct HandleRes {
  std::shared_ptr<Mapping> map;  // set at open, dropped only by the destructor
  std::atomic<std::uint64_t> position{0};
  HandleFlags flags;
  ErlNifEnv* info_env = nullptr;  // holds the path and options as given
  ERL_NIF_TERM path_term = 0;
  ERL_NIF_TERM options_term = 0;

  // The RegionRes of the generation direct binaries currently point into.
  // Every RegionRes this handle made is kept (one reference each) until the
  // handle is closed, so a pointer read from `current` is valid for the
  // whole of an access; generations change only when head-room runs out.
  std::atomic<RegionRes*> current{nullptr};
  std::mutex regions_mu;
  std::vector<RegionRes*> regions;

  // The RegionRes for `region`, made on first use. Call inside the map's
  // access gate. Returns nullptr when out of memory.
  RegionRes* region_res(Priv* priv, Region& region);
  // Drops the handle's references on every RegionRes (after close).
  void release_regions();
};

inline Priv* priv(ErlNifEnv* env) { return static_cast<Priv*>(enif_priv_data(env)); }

// Resource-type callbacks and set-up for load/upgrade.
bool open_resource_types(ErlNifEnv* env, Priv* p, ErlNifResourceFlags flags);

}  // namespace emmap::nif
