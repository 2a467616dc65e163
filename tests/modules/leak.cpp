// Leaks about `kilobytes` per call in every way C++ code allocates; unload reclaims it all.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "leak_api.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

RELIB_MODULE_EXPORTS(LEAK_EXPORTS);

namespace {
std::string static_text;               // a static std::string
std::map<int, std::string> static_map;  // and a static std::map
std::vector<std::thread> workers;
thread_local std::string thread_text;   // a thread_local with a destructor

struct alignas(64) aligned_thing {
  char bytes[64];
};
}  // namespace

std::size_t leak_everything(std::size_t kilobytes) {
  const std::size_t share = kilobytes * 1024 / 8;
  static_text.assign(share, 's');
  for (int i = 0; i < 16; ++i) static_map[i] = std::string(share / 16, 'm');
  new std::vector<char>(share, 'n');                        // new, never deleted
  std::memset(std::malloc(share), 'c', share);              // malloc, never freed
  std::ostringstream stream;                                // a stream and its string
  stream << std::string(share, 'o');
  new std::string(stream.str());
  try {
    throw std::runtime_error(std::string(share, 'e'));      // an exception, thrown and caught
  } catch (const std::exception& error) {
    new std::string(error.what());
  }
  thread_text.assign(share, 't');
  new aligned_thing[share / 64 / 4];                         // aligned new[], never deleted
  new (std::nothrow) char[share / 4];                        // nothrow new[]
  workers.emplace_back([share] { thread_text.assign(share, 'w'); });  // joined in before_unload
  return static_text.size() + stream.str().size();
}

bool free_libc_memory() {
  char* copy = strdup("allocated by libc, freed by the module");  // strdup runs inside libc
  char* bigger = static_cast<char*>(std::realloc(copy, 4096));
  if (bigger == nullptr) return false;
  std::free(bigger);
  return true;
}

int use_libc_state(int round) {
  std::printf("  [module] printf %d\n", round);
  std::cout << "  [module] iostream " << round << std::endl;
  const std::time_t now = std::time(nullptr);
  const std::tm* local = std::localtime(&now);
#if defined(_WIN32)
  _putenv_s("RELIB_TEST_ROUND", std::to_string(round).c_str());
#else
  setenv("RELIB_TEST_ROUND", std::to_string(round).c_str(), 1);
#endif
  return local != nullptr ? local->tm_year : -1;
}

// Memory handed to the host, which frees it.
char* copy_text(const char* text) {
  char* copy = static_cast<char*>(std::malloc(std::strlen(text) + 1));
  std::strcpy(copy, text);
  return copy;
}
std::string make_string(std::size_t length) { return std::string(length, 'x'); }

#if defined(_WIN32)
// The C runtime has no getline: the C runtime's strdup, freed by module code, stands in for it.
std::size_t getline_length(std::size_t length) {
  std::string text(length, 'g');
  char* copy = _strdup(text.c_str());
  const std::size_t copied = copy != nullptr ? std::strlen(copy) : 0;
  std::free(copy);
  return copied;
}
#else
// libc's getline grows a buffer the module allocated: libc calls the process's realloc on it.
std::size_t getline_length(std::size_t length) {
  std::string text(length, 'g');
  FILE* stream = fmemopen(text.data(), text.size(), "r");
  std::size_t capacity = 8;
  char* line = static_cast<char*>(std::malloc(capacity));
  const ssize_t read = getline(&line, &capacity, stream);
  std::fclose(stream);
  std::free(line);
  return read < 0 ? 0 : static_cast<std::size_t>(read);
}
#endif

RELIB_MODULE_BEFORE_UNLOAD() {
  for (std::thread& worker : workers) worker.join();
  workers.clear();
}
