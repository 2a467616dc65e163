// The greeter interface: unrelated to shapes, and with an import the host must provide.
#pragma once

// `name` is also a shape export: each module's symbols are looked up in that module only,
// so two interfaces may use the same names without clashing.
#define GREETER_EXPORTS(X)             \
  X(name, const char*())               \
  X(greet, int(const char* who))

#define GREETER_IMPORTS(X)             \
  X(print, void(const char* line))
