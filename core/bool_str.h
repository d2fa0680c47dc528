// A bool in an error message as the code spells it ("trans_a=true"), not as 1/0, the ostream
// default that fail() (core/error.h) would print.
#pragma once

namespace idem {

inline const char* bool_str(bool v) { return v ? "true" : "false"; }

}  // namespace idem
