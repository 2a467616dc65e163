// Edit the text, rebuild this module while the host runs, and the host prints the new text: the
// running process swaps the new build in at its next update().
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "message_api.hpp"

RELIB_MODULE_EXPORTS(MESSAGE_EXPORTS);

const char* message() { return "hello from the original module.cpp"; }
