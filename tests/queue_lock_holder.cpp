// Test helper: takes a queue file's cross-process lock and keeps it, alive
// and making no progress (a stopped or frozen process, as far as others
// can tell), until it is killed. Prints "held" once it has the lock.
//   queue_lock_holder FILE
#include <unistd.h>

#include <cstdio>

#include "mapping.h"
#include "queue.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  emmap::OpenOptions o;
  o.write = true;
  auto m = emmap::Mapping::open(argv[1], 0, 0, o);
  if (!m) return 3;
  auto pin = m->mapping->pin();
  if (!pin) return 4;
  auto st = emmap::make_backend()->shared_lock_acquire((*pin)->base() + emmap::queue::kLockOffset,
                                                       emmap::MappingBackend::kForever);
  if (!st || *st == emmap::LockState::busy) return 5;
  std::printf("held\n");
  std::fflush(stdout);
  for (;;) ::pause();
}
