// A second, unrelated interface: hosts load modules of both kinds at once.
#pragma once

#define OTHER_EXPORTS(X)             \
  X(name, const char*())             \
  X(multiply, long(long a, long b))

#define OTHER_IMPORTS(X) X(scale_factor, long())
