#include "core/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/kernels/runtime.h"

namespace idem::profiler {

namespace {
struct Mark {
  const char* op;
  const char* dir;
  double bytes;
  uint64_t launches;
  void* event;  // GPU: a recorded CUDA event
  double host_us;
};
// The one profile in progress (the hooks read `g_on` only). A global on purpose: the hooks sit
// deep in the engine and must cost one load when profiling is off.
std::atomic<bool> g_on{false};
struct Session {
  Device device;
  std::vector<Mark> marks;
  std::chrono::steady_clock::time_point t0;
};
Session& session() {
  static Session s;
  return s;
}
void destroy_events(std::vector<Mark>& marks) noexcept {
  for (const Mark& m : marks)
    if (m.event) cuda::event_destroy(m.event);
  marks.clear();
}
double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - session().t0).count();
}
}  // namespace

void start(Device device) {
  IDEM_CHECK(!g_on.load(), "profiler", "a profile is already running");
  Session& s = session();
  s.device = device;
  destroy_events(s.marks);
  s.t0 = std::chrono::steady_clock::now();
  if (device.is_cuda()) cuda::synchronize(device.index);
  g_on.store(true);
  mark("(start)", "", 0);
}

bool active() { return g_on.load(std::memory_order_relaxed); }

void mark(const char* op, const char* dir, double bytes) {
  if (!active()) return;
  Session& s = session();
  Mark m{op, dir, bytes, 0, nullptr, now_us()};
  if (s.device.is_cuda()) {
    m.launches = cuda::launch_count();
    m.event = cuda::event_record(s.device.index);
  }
  s.marks.push_back(m);
}

std::vector<Row> stop() {
  IDEM_CHECK(g_on.load(), "profiler", "no profile is running");
  g_on.store(false);
  Session& s = session();
  // Own the marks here: their events are destroyed on every way out, a throw included.
  struct Marks {
    std::vector<Mark> v;
    ~Marks() { destroy_events(v); }
  } owned{std::move(s.marks)};
  s.marks.clear();
  if (s.device.is_cuda()) cuda::synchronize(s.device.index);
  std::map<std::pair<std::string, std::string>, Row> agg;
  for (size_t i = 1; i < owned.v.size(); ++i) {
    const Mark &a = owned.v[i - 1], &b = owned.v[i];
    Row& r = agg[{b.op, b.dir}];
    r.op = b.op, r.dir = b.dir;
    r.calls += 1;
    r.bytes += b.bytes;
    if (s.device.is_cuda()) {
      r.us += cuda::event_elapsed_us(a.event, b.event);
      r.launches += b.launches - a.launches;
    } else {
      r.us += b.host_us - a.host_us;
    }
  }
  std::vector<Row> rows;
  for (auto& [k, r] : agg) rows.push_back(r);
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.us > b.us; });
  return rows;
}

void abort() noexcept {
  g_on.store(false);
  destroy_events(session().marks);
}

std::string table(const std::vector<Row>& rows, const std::string& title) {
  double total = 0, launches = 0;
  for (const Row& r : rows) total += r.us, launches += double(r.launches);
  std::ostringstream os;
  char buf[256];
  os << "### " << title << "\n\n| op | direction | calls | launches | µs | bytes | share |\n|---|---|---:|---:|---:|---:|---:|\n";
  for (const Row& r : rows) {
    std::snprintf(buf, sizeof buf, "| %s | %s | %llu | %llu | %.1f | %.0f | %.1f%% |\n", r.op.c_str(),
                  r.dir.c_str(), (unsigned long long)r.calls, (unsigned long long)r.launches, r.us,
                  r.bytes, total > 0 ? 100.0 * r.us / total : 0.0);
    os << buf;
  }
  std::snprintf(buf, sizeof buf, "| **total** | | | %.0f | %.1f | | 100%% |\n", launches, total);
  os << buf;
  return os.str();
}

}  // namespace idem::profiler
