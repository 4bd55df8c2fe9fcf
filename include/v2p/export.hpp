// Symbol visibility for the SDK library: everything is hidden unless marked V2P_API, so the
// shared library's ABI is exactly the public headers.
#pragma once

#define V2P_API __attribute__((visibility("default")))
