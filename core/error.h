// idem::Error — the one exception type of the library.
// Messages start with the op name in brackets, PyTorch style:
//   [matmul] shapes (80x513) and (1x513) cannot be multiplied
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace idem {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Builds "[op] part1part2..." and throws idem::Error.
template <typename... Parts>
[[noreturn]] void fail(const std::string& op, const Parts&... parts) {
  std::ostringstream os;
  os << "[" << op << "] ";
  detail::append(os, parts...);
  throw Error(os.str());
}

}  // namespace idem

// IDEM_CHECK(cond, "op", "message ", value, ...) throws idem::Error when cond is false.
#define IDEM_CHECK(cond, op, ...)            \
  do {                                       \
    if (!(cond)) ::idem::fail(op, __VA_ARGS__); \
  } while (0)
