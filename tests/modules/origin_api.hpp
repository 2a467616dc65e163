// A module whose dependency is found through RUNPATH $ORIGIN alone.
#pragma once
#include "relib_module.hpp"

#define ORIGIN_EXPORTS(X) X(dependency_value, int())
