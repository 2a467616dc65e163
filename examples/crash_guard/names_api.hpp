// The interface of the crash_guard module: one export, called by the host every frame.
#pragma once

#define NAMES_EXPORTS(X) X(greeting, const char*(int frame))

// Kept across reloads, crashes included: how many greetings the module has made.
struct greeting_count {
  long greetings;
};
