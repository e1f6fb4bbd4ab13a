// emmap — memory-mapped files for C++ (the core of the Erlang library).
//
//   #include <emmap/emmap.h>
//   emmap::OpenOptions o; o.write = o.create = true; o.size = 4096;
//   auto opened = emmap::Mapping::open("/tmp/demo.bin", 0, 0, o);
//   if (!opened) { std::puts(opened.error().name().data()); return 1; }
//   auto& m = *opened->mapping;
//   m.write(0, "hello", 5);
//   m.sync();
//
// See mapping.h for the design and the error each call can return.
#pragma once

#include "backend.h"
#include "error.h"
#include "mapping.h"
