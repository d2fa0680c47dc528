#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "apps/idem/cli.h"

namespace idem::cli {

namespace {
std::string fmt_seconds(double s) {
  char buf[32];
  if (s < 0 || s > 1e7) return "?";
  const int t = int(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%02d:%02d", t / 60, t % 60);
  return buf;
}
}  // namespace

Progress::Progress(std::string label, int64_t total, bool quiet)
    : label_(std::move(label)), total_(total < 1 ? 1 : total), quiet_(quiet) {
  tty_ = isatty(STDERR_FILENO) != 0;
  color_ = tty_ && std::getenv("NO_COLOR") == nullptr;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_ && tty_ && !quiet_) std::fputc('\n', stderr);
}

void Progress::update(int64_t done, const std::string& postfix) {
  done_ = done;
  postfix_ = postfix;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  // A terminal redraws at most ~10×/s; a log gets a line every 5 s.
  if (since < (tty_ ? 0.1 : 5.0)) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish(const std::string& postfix) {
  if (finished_) return;
  done_ = total_;
  if (!postfix.empty()) postfix_ = postfix;
  draw(true);
  finished_ = true;
}

void Progress::draw(bool final) {
  if (quiet_) return;
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = el > 0 ? double(done_) / el : 0.0;
  const double eta = rate > 0 ? double(total_ - done_) / rate : -1;
  const double frac = double(done_) / double(total_);
  if (tty_) {
    const int width = 24, fill = int(frac * width + 0.5);
    std::string bar(size_t(fill), '#');
    bar.resize(size_t(width), '.');
    std::fprintf(stderr, "\r\033[K%s%s%s [%s] %3d%% %lld/%lld %.1f/s eta %s %s", color_ ? "\033[1m" : "",
                 label_.c_str(), color_ ? "\033[0m" : "", bar.c_str(), int(frac * 100),
                 (long long)done_, (long long)total_, rate, fmt_seconds(eta).c_str(), postfix_.c_str());
    if (final) std::fprintf(stderr, " (%s)\n", fmt_seconds(el).c_str());
  } else {
    std::fprintf(stderr, "%s: %lld/%lld (%d%%) %.1f/s elapsed %s eta %s %s\n", label_.c_str(),
                 (long long)done_, (long long)total_, int(frac * 100), rate, fmt_seconds(el).c_str(),
                 final ? "0" : fmt_seconds(eta).c_str(), postfix_.c_str());
  }
  std::fflush(stderr);
}

}  // namespace idem::cli
