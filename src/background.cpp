#include "background.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace emmap {
namespace {

class Worker {
 public:
  Worker() : thread_([this] { run(); }) { thread_.detach(); }

  bool post(std::function<void()> work) {
    try {
      std::lock_guard<std::mutex> g(mu_);
      queue_.push_back(std::move(work));
    } catch (...) {
      return false;
    }
    cv_.notify_one();
    return true;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [this] { return !queue_.empty(); });
      auto work = std::move(queue_.front());
      queue_.pop_front();
      lk.unlock();
      work();
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::thread thread_;
};

}  // namespace

bool run_in_background(std::function<void()> work) noexcept {
  // Never destroyed: the detached thread may be waiting when statics die.
  static Worker* w = new Worker();
  return w->post(std::move(work));
}

}  // namespace emmap
