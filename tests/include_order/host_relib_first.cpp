// The classic order, without RELIB_HOST: relib.hpp first, then the interface header.
#define RELIB_IMPLEMENTATION
#include "relib.hpp"
#include "order_api.hpp"

RELIB_HOST_EXPORTS(order_exports, ORDER_EXPORTS);

int main() { return relib::load_module<order_exports>("") ? 1 : 0; }
