#include "resources.h"

#include <new>

namespace emmap::nif {


// ---- Reaper ----------------------------------------------------------------

Reaper::Reaper() : thread_([this] { run(); }) {}

Reaper::~Reaper() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void Reaper::drop(std::shared_ptr<void> p) {
  {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back(std::move(p));
  }
  cv_.notify_one();
}

void Reaper::run() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
    while (!queue_.empty()) {
      std::shared_ptr<void> p = std::move(queue_.front());
      queue_.pop_front();
      lk.unlock();
      p.reset();  // the munmap / close happens here, off the schedulers
      lk.lock();
    }
    if (stop_) return;
  }
}

// ---- HandleRes --------------------------------------------------------------

RegionRes* HandleRes::region_res(Priv* p, Region& region) {
  RegionRes* cur = current.load(std::memory_order_acquire);
  if (cur && cur->region.get() == &region) return cur;
  std::lock_guard<std::mutex> g(regions_mu);
  for (RegionRes* r : regions) {
    if (r->region.get() == &region) {
      current.store(r, std::memory_order_release);
      return r;
    }
  }
  void* mem = enif_alloc_resource(p->region_type, sizeof(RegionRes));
  if (!mem) return nullptr;
  auto* r = new (mem) RegionRes{region.shared_from_this()};
  try {
    regions.push_back(r);
  } catch (...) {
    enif_release_resource(r);
    return nullptr;
  }
  current.store(r, std::memory_order_release);
  return r;
}

void HandleRes::release_regions() {
  std::vector<RegionRes*> old;
  {
    std::lock_guard<std::mutex> g(regions_mu);
    old.swap(regions);
    current.store(nullptr, std::memory_order_release);
  }
  for (RegionRes* r : old) enif_release_resource(r);
}

namespace {

// Maps above this size are unmapped on the reaper thread when dropped
// without close (munmap of many populated pages takes milliseconds).
constexpr std::uint64_t kReapAbove = 8u << 20;

void handle_dtor(ErlNifEnv* env, void* obj) {
  auto* h = static_cast<HandleRes*>(obj);
  h->release_regions();
  if (h->map && h->map->size() > kReapAbove) priv(env)->reaper.drop(std::move(h->map));
  if (h->info_env) enif_free_env(h->info_env);
  h->~HandleRes();
}

void region_dtor(ErlNifEnv* env, void* obj) {
  auto* r = static_cast<RegionRes*>(obj);
  // The last direct binary over a generation went away; its munmap may be large.
  if (r->region) priv(env)->reaper.drop(std::move(r->region));
  r->~RegionRes();
}

void queue_dtor(ErlNifEnv* env, void* obj) {
  auto* q = static_cast<QueueRes*>(obj);
  if (q->q) priv(env)->reaper.drop(std::move(q->q));  // closes a descriptor: off the scheduler
  q->~QueueRes();
}

void claim_dtor(ErlNifEnv* env, void* obj) {
  auto* c = static_cast<ClaimRes*>(obj);
  c->claim.reset();  // ends the claim: a round trip to the holder thread, which never blocks
  if (c->q) priv(env)->reaper.drop(std::move(c->q));
  c->~ClaimRes();
}

}  // namespace

bool open_resource_types(ErlNifEnv* env, Priv* p, ErlNifResourceFlags flags) {
  ErlNifResourceFlags tried;
  p->handle_type = enif_open_resource_type(env, nullptr, "emmap_handle", handle_dtor, flags, &tried);
  p->region_type = enif_open_resource_type(env, nullptr, "emmap_region", region_dtor, flags, &tried);
  p->queue_type = enif_open_resource_type(env, nullptr, "emmap_queue", queue_dtor, flags, &tried);
  p->claim_type = enif_open_resource_type(env, nullptr, "emmap_queue_claim", claim_dtor, flags, &tried);
  return p->handle_type && p->region_type && p->queue_type && p->claim_type;
}

}  // namespace emmap::nif
