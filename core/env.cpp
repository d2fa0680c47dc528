#include "core/env.h"

#include <cstdlib>

#include "core/error.h"

namespace idem {

std::string env_choice(const char* name, std::initializer_list<const char*> allowed,
                       const char* fallback) {
  const char* env = std::getenv(name);
  if (!env || !*env) return fallback;
  const std::string value = env;
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return value;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  fail("env", name, " is '", value, "'; expected one of: ", list, " (or unset: ", fallback, ")");
}

bool env_flag(const char* name, bool fallback) {
  const std::string v = env_choice(name, {"1", "true", "on", "0", "false", "off"}, fallback ? "1" : "0");
  return v == "1" || v == "true" || v == "on";
}

}  // namespace idem
