// One export, for checking that every include order gives each side its own implementation.
#pragma once
#include "relib_module.hpp"

#define ORDER_EXPORTS(X) X(answer, int())
