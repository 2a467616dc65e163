// The interface of the leaky module: one export that leaks on purpose.
#pragma once
#include <cstddef>

#define LEAKY_EXPORTS(X) X(leak, std::size_t(std::size_t kilobytes))
