// The cores this process may use (contract: core/cpu_cores.h).
#include "core/cpu_cores.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif

namespace idem {

namespace {

// Whole cores for quota/period CPUs, rounded up (1.5 CPUs of quota keep 2 threads busy part of
// the time; rounding down would leave quota unused). 0 for a missing or malformed pair.
int cores_of_quota(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return 0;
  return int(std::min<long long>((quota + period - 1) / period, 1 << 20));
}

// The whole content of a small text file, or "" when it cannot be read (cgroup files are often
// absent; not finding one is not an error here).
std::string read_if_present(const std::string& path) {
  std::ifstream f(path);
  if (!f) return "";
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// The number in `text` if it is one (surrounding white space allowed), else `fallback`.
long long number_or(const std::string& text, long long fallback) {
  std::istringstream in(text);
  long long v = 0;
  std::string rest;
  if (!(in >> v) || (in >> rest)) return fallback;
  return v;
}

#if defined(__linux__)
// The process's cgroup v2 path ("0::/some/path" in /proc/self/cgroup), "" when there is none.
std::string cgroup_v2_path() {
  std::istringstream lines(read_if_present("/proc/self/cgroup"));
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return "";
}

int cgroup_limit() {
  // v2: the process's own cgroup first, then the root of the mount (a container's namespace
  // shows its own cgroup as the root).
  const std::string own = cgroup_v2_path();
  for (const std::string& dir : {std::string("/sys/fs/cgroup") + (own == "/" ? "" : own), std::string("/sys/fs/cgroup")}) {
    const std::string text = read_if_present(dir + "/cpu.max");
    if (!text.empty()) return cgroup_v2_cpu_limit(text);
  }
  for (const char* dir : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
    const std::string quota = read_if_present(std::string(dir) + "/cpu.cfs_quota_us");
    if (!quota.empty()) return cgroup_v1_cpu_limit(quota, read_if_present(std::string(dir) + "/cpu.cfs_period_us"));
  }
  return 0;
}
#endif

}  // namespace

int cgroup_v2_cpu_limit(const std::string& cpu_max) {
  std::istringstream in(cpu_max);
  std::string quota, period;
  if (!(in >> quota >> period) || quota == "max") return 0;
  return cores_of_quota(number_or(quota, -1), number_or(period, -1));
}

int cgroup_v1_cpu_limit(const std::string& quota_us, const std::string& period_us) {
  return cores_of_quota(number_or(quota_us, -1), number_or(period_us, -1));
}

int available_cores() {
  int n = int(std::max(1u, std::thread::hardware_concurrency()));
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int allowed = CPU_COUNT(&set);
    if (allowed >= 1) n = std::min(n, allowed);
  }
  if (const int limit = cgroup_limit(); limit >= 1) n = std::min(n, limit);
#endif
  return std::max(1, n);
}

}  // namespace idem
