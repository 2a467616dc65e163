// The interfaces of the modules measured by relib_footprint.
#pragma once

#define FOOTPRINT_EXPORTS(X) X(add, int(int a, int b))
#define FOOTPRINT_IOSTREAM_EXPORTS(X) X(add, int(int a, int b)) X(print_sum, void(int a, int b))
