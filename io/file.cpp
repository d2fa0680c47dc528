// Files: the atomic writer and the checked reader. Guarantees: io/file.h.
#include "io/file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace idem {

namespace fs = std::filesystem;

void check_little_endian(const char* op) {
  const uint16_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  IDEM_CHECK(first == 1, op,
             "this host is big-endian; the file format is little-endian and "
             "byte swapping is not implemented");
}

namespace {

std::atomic<uint64_t> g_tmp_counter{0};

// A writer killed mid-write (SIGKILL, OOM killer, power loss) leaves its temporary file
// ".<name>.tmp.<pid>.<n>" behind. It never replaces the target, but it holds disk space, so the
// next writer of the same target removes those whose process no longer exists. A live writer's
// file (this process's included) is never touched. Best effort: errors are ignored.
void remove_stale_temps(const fs::path& dir, const std::string& filename) {
  const std::string prefix = "." + filename + ".tmp.";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.size() <= prefix.size() || n.compare(0, prefix.size(), prefix) != 0) continue;
    const size_t dot = n.find('.', prefix.size());
    if (dot == std::string::npos || dot == prefix.size() || dot - prefix.size() > 9) continue;
    long pid = 0;
    bool digits = true;
    for (size_t i = prefix.size(); i < dot; ++i) {
      digits = digits && n[i] >= '0' && n[i] <= '9';
      pid = pid * 10 + (n[i] - '0');
    }
    if (!digits || pid <= 0 || pid == static_cast<long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or unknown
    std::error_code rm_ec;
    fs::remove(it->path(), rm_ec);
  }
}

// The temporary file: removed on destruction unless committed.
class TempFile {
 public:
  TempFile(const std::string& path, const char* op) : op_(op) {
    const fs::path target(path);
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    IDEM_CHECK(target.has_filename(), op, path, ": not a file name");
    tmp_ = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                   std::to_string(g_tmp_counter.fetch_add(1))))
               .string();
    dir_ = dir.string();
    remove_stale_temps(dir, target.filename().string());
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0)
      fail(op, path, ": cannot create the temporary file ", tmp_, ": ", std::strerror(errno));
    // Replacing a file keeps its permission bits (a 0600 checkpoint stays private).
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode))
      (void)::fchmod(fd_, st.st_mode & 07777);
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const size_t chunk = std::min<size_t>(n, size_t{1} << 30);
      const ssize_t w = ::write(fd_, p, chunk);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail(op_, tmp_, ": write failed: ", std::strerror(errno));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  void commit(const std::string& path) {
    if (::fsync(fd_) != 0) fail(op_, tmp_, ": fsync failed: ", std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail(op_, tmp_, ": close failed: ", std::strerror(errno));
    if (std::rename(tmp_.c_str(), path.c_str()) != 0)
      fail(op_, path, ": cannot rename ", tmp_, " to it: ", std::strerror(errno));
    committed_ = true;
    // Make the rename itself durable; a failure here leaves a complete file, so it is ignored.
    const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  const char* op_;
  std::string tmp_, dir_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void write_file_atomic(const std::string& path, const char* op,
                       const std::function<void(const ByteSink&)>& body) {
  TempFile tmp(path, op);
  body([&](const void* data, size_t n) { tmp.write(data, n); });
  tmp.commit(path);
}

InputFile::InputFile(const std::string& path, const char* op) : path_(path), op_(op) {
  f_ = std::fopen(path.c_str(), "rb");
  if (!f_) fail(op, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(::fileno(f_), &st) != 0) {
    const int err = errno;
    std::fclose(f_);
    fail(op, path, ": cannot stat: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    std::fclose(f_);
    fail(op, path, ": not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  std::fclose(f_);
}

void InputFile::read_exact(void* dst, size_t n, const char* what) {
  if (n == 0) return;
  const size_t got = std::fread(dst, 1, n, f_);
  if (got != n)
    fail(op_, path_, ": unexpected end of file while reading ", what, " (got ", got, " of ", n,
         " bytes)");
}

}  // namespace idem
