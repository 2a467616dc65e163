// The interface of the live_reload module: one export, called by the host every frame.
#pragma once

// The text lives in the module's read-only data: the host prints it before the next update(),
// while the version that returned it is still loaded.
#define MESSAGE_EXPORTS(X) X(message, const char*())
