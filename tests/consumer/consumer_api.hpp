// The consumer module's interface, shared by host.cpp and module.cpp.
#pragma once

#define CONSUMER_EXPORTS(X) \
  X(add, int(int a, int b))
