// How many cores this process may use: the default thread count of the CPU pool
// (core/parallel.h) when IDEM_NUM_THREADS and --threads are not given.
//
// std::thread::hardware_concurrency counts the machine's cores, not the process's: in a
// container limited to 2 CPUs of a 64-core host, or under `taskset -c 0`, a pool of that size
// runs more threads than it has cores, and the time slicing between them costs more than the
// extra threads give (every parallel loop waits for its slowest chunk). So the count is the
// smallest of the machine's cores, the CPUs of the process's affinity mask, and the CPU quota
// of its cgroup (v2 cpu.max, or v1 cfs_quota_us / cfs_period_us), rounded up.
#pragma once
#include <string>

namespace idem {

// The cores the process may use (>= 1), read once per call from the system (Linux; elsewhere
// hardware_concurrency alone).
int available_cores();

// The CPU limit a cgroup v2 `cpu.max` file's text gives ("QUOTA PERIOD", e.g. "150000 100000"
// is 1.5 CPUs), rounded up to whole cores; 0 when it sets no limit ("max ...") or does not parse.
int cgroup_v2_cpu_limit(const std::string& cpu_max);

// The same for cgroup v1: cpu.cfs_quota_us and cpu.cfs_period_us (quota -1: no limit); 0 for no
// limit or a value that does not parse.
int cgroup_v1_cpu_limit(const std::string& quota_us, const std::string& period_us);

}  // namespace idem
