#include "background.h"

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace emmap {
namespace {

using Clock = std::chrono::steady_clock;

class Worker {
 public:
  Worker() : thread_([this] { run(); }) { thread_.detach(); }

  bool post(Clock::time_point when, std::function<void()> work) {
    try {
      std::lock_guard<std::mutex> g(mu_);
      if (when <= Clock::now()) {
        now_.push_back(std::move(work));
      } else {
        later_.emplace(when, std::move(work));
      }
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
      // Timers that are due join the queue of work to do now, in order.
      while (!later_.empty() && later_.begin()->first <= Clock::now()) {
        now_.push_back(std::move(later_.begin()->second));
        later_.erase(later_.begin());
      }
      if (now_.empty()) {
        if (later_.empty()) {
          cv_.wait(lk);
        } else {
          cv_.wait_until(lk, later_.begin()->first);
        }
        continue;
      }
      auto work = std::move(now_.front());
      now_.pop_front();
      lk.unlock();
      work();
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> now_;
  std::multimap<Clock::time_point, std::function<void()>> later_;
  std::thread thread_;
};

Worker* worker() {
  // Never destroyed: the detached thread may be waiting when statics die.
  static Worker* w = new Worker();
  return w;
}

}  // namespace

bool run_in_background(std::function<void()> work) noexcept {
  try {
    return worker()->post(Clock::now(), std::move(work));
  } catch (...) {
    return false;
  }
}

bool run_in_background_after(std::chrono::milliseconds delay, std::function<void()> work) noexcept {
  try {
    return worker()->post(Clock::now() + delay, std::move(work));
  } catch (...) {
    return false;
  }
}

}  // namespace emmap
