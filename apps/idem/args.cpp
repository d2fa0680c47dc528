#include <cstdlib>
#include <sstream>

#include "apps/idem/cli.h"
#include "core/parallel.h"
#include "core/determinism.h"
#include "core/error.h"
#include "core/kernels/runtime.h"

namespace idem::cli {

Args::Args(const std::string& command, const std::vector<OptionSpec>& specs, int argc,
           char** argv, int first)
    : command_(command), specs_(specs) {
  auto find = [&](const std::string& name) -> const OptionSpec* {
    for (const auto& s : specs_)
      if (s.name == name) return &s;
    return nullptr;
  };
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
      continue;
    }
    if (a.rfind("--", 0) != 0)
      fail("idem " + command_, "unexpected argument '", a, "' (options start with --; see idem ",
           command_, " --help)");
    std::string name = a.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1), name = name.substr(0, eq), inline_value = true;
    }
    const OptionSpec* s = find(name);
    if (!s) {
      std::string valid;
      for (const auto& o : specs_) valid += " --" + o.name;
      fail("idem " + command_, "unknown option --", name, "; valid options:", valid);
    }
    if (s->takes_value && !inline_value) {
      if (i + 1 >= argc) fail("idem " + command_, "option --", name, " needs a value");
      value = argv[++i];
    } else if (!s->takes_value) {
      if (inline_value && value != "1" && value != "true" && value != "0" && value != "false")
        fail("idem " + command_, "option --", name, " is a switch; it takes no value");
      if (!inline_value) value = "1";
    }
    given_[name] = value;
  }
}

bool Args::flag(const std::string& name) const {
  auto it = given_.find(name);
  return it != given_.end() && (it->second == "1" || it->second == "true");
}

std::string Args::str(const std::string& name) const {
  auto it = given_.find(name);
  if (it != given_.end()) return it->second;
  for (const auto& s : specs_)
    if (s.name == name) return s.default_value;
  fail("idem " + command_, "internal: no option --", name);
}

int64_t Args::integer(const std::string& name) const {
  const std::string v = str(name);
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') fail("idem " + command_, "--", name, " expects an integer, got '", v, "'");
  return x;
}

double Args::number(const std::string& name) const {
  const std::string v = str(name);
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0') fail("idem " + command_, "--", name, " expects a number, got '", v, "'");
  return x;
}

std::vector<std::string> Args::list(const std::string& name) const {
  std::vector<std::string> out;
  std::stringstream ss(str(name));
  for (std::string part; std::getline(ss, part, ',');)
    if (!part.empty()) out.push_back(part);
  return out;
}

std::string Args::usage() const {
  std::ostringstream os;
  os << "options of idem " << command_ << ":\n";
  for (const auto& s : specs_) {
    std::string lhs = "  --" + s.name + (s.takes_value ? " VALUE" : "");
    if (lhs.size() < 26) lhs.resize(26, ' ');
    os << lhs << " " << s.help;
    if (s.takes_value && !s.default_value.empty()) os << " (default: " << s.default_value << ")";
    os << "\n";
  }
  return os.str();
}

std::vector<OptionSpec> common_options() {
  return {{"seed", true, "0", "seed for data order, initialization and shifts"},
          {"device", true, "auto", "cpu, cuda or cuda:N; auto = cuda when a GPU is present"},
          {"threads", true, "auto", "CPU threads for the kernels, 1..1024; auto = IDEM_NUM_THREADS, else every core this process may use (affinity mask, cgroup CPU quota; results do not depend on it)"},
          {"deterministic", false, "", "bit-identical results for the same seed (docs/reliability.md)"},
          {"quiet", false, "", "no progress output"},
          {"json", false, "", "machine-readable output on stdout"}};
}

std::string resolve_device(const Args& a) {
  if (a.flag("deterministic")) set_deterministic(true);
  if (const std::string t = a.str("threads"); t != "auto") set_num_threads(parse_thread_count(t.c_str(), "--threads"));
  std::string d = a.str("device");
  if (d == "auto") return cuda::available() ? "cuda:0" : "cpu";
  if (d.rfind("cuda", 0) == 0 && !cuda::available())
    fail("idem " + a.command(), "--device ", d, " but no GPU is usable here: ", cuda::device_summary());
  return d;
}

}  // namespace idem::cli
