// Kill-during-save: a writer process SIGKILLed in the middle of writing a checkpoint leaves the
// previous checkpoint intact (write_file_atomic: temporary file, fsync, rename), and its
// leftover temporary file neither corrupts the target nor survives the next save.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "io/file.h"
#include "io/safetensors.h"
#include "layers/checkpoint.h"
#include "layers/linear.h"
#include "tests/test_util.h"

namespace idem {
namespace {

namespace fs = std::filesystem;
using testing::read_bytes;
using testing::TempDir;

// The names in `dir` that start with "." + target + ".tmp." (leftover temporary files).
std::vector<std::string> temp_files(const TempDir& dir, const std::string& target) {
  std::vector<std::string> out;
  const std::string prefix = "." + target + ".tmp.";
  for (const auto& e : fs::directory_iterator(dir.path())) {
    const std::string n = e.path().filename().string();
    if (n.compare(0, prefix.size(), prefix) == 0) out.push_back(n);
  }
  return out;
}

// Reads one byte from fd within `ms`; false on timeout or EOF.
bool wait_byte(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) != 1) return false;
  char c;
  return ::read(fd, &c, 1) == 1;
}

// Reads whatever fd holds within `ms` (the child's progress reports).
std::string drain(int fd, int ms) {
  std::string out;
  pollfd p{fd, POLLIN, 0};
  char buf[256];
  while (::poll(&p, 1, ms) == 1) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    ms = 0;
  }
  return out;
}

void kill_and_reap(pid_t pid) {
  ASSERT_EQ(::kill(pid, SIGKILL), 0) << std::strerror(errno);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
}

// A writer that stops half-way (its byte sink blocks forever) and is then killed: the target
// keeps its old bytes, the partial temporary file is left beside it, and the next save
// replaces the target and removes the leftover.
TEST(AtomicWrite, WriterKilledMidWriteLeavesThePreviousFileIntact) {
  TempDir dir("idem_atomic_write");
  const std::string path = dir.file("model.safetensors");
  save_safetensors(path, {{"w", full({256, 256}, 1.0)}}, {{"version", "1"}});
  const std::string before = read_bytes(path);

  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {  // the child: write half of a new file, say so, then hang
    ::close(ready[0]);
    try {
      write_file_atomic(path, "test writer", [&](const ByteSink& sink) {
        const std::string half(before.size() / 2, 'x');
        sink(half.data(), half.size());
        (void)!::write(ready[1], "h", 1);
        for (;;) ::pause();
      });
    } catch (...) {
    }
    ::_exit(3);  // not reached unless the write failed
  }
  ::close(ready[1]);
  ASSERT_TRUE(wait_byte(ready[0], 30000)) << "the writer never reached the middle of its write";
  const auto partial = temp_files(dir, "model.safetensors");
  ASSERT_EQ(partial.size(), 1u);
  EXPECT_EQ(fs::file_size(dir.path() / partial[0]), before.size() / 2);
  kill_and_reap(pid);
  ::close(ready[0]);

  // The previous checkpoint is intact, byte for byte, and loads.
  EXPECT_EQ(read_bytes(path), before);
  SafetensorsContents c = read_safetensors(path);
  ASSERT_EQ(c.tensors.size(), 1u);
  EXPECT_EQ(c.tensors[0].second.to_vector<float>()[0], 1.f);
  EXPECT_EQ(temp_files(dir, "model.safetensors"), partial);  // the dead writer's leftover

  // The next save replaces the file and clears the dead writer's temporary file.
  save_safetensors(path, {{"w", full({4}, 2.0)}}, {{"version", "2"}});
  EXPECT_TRUE(temp_files(dir, "model.safetensors").empty());
  EXPECT_EQ(load_safetensors(path)[0].second.to_vector<float>(), std::vector<float>(4, 2.f));
}

// A live writer's temporary file is not a leftover: another writer must not remove it.
TEST(AtomicWrite, LiveWritersTemporaryFileIsKept) {
  TempDir dir("idem_atomic_write");
  const std::string path = dir.file("a.npy");
  // Our own pid: alive. Pid 0 / non-numeric names: never touched.
  const std::string mine =
      "." + std::string("a.npy") + ".tmp." + std::to_string(::getpid()) + ".99";
  const std::string odd = ".a.npy.tmp.notapid.1";
  testing::write_bytes(dir.file(mine), "live");
  testing::write_bytes(dir.file(odd), "odd");
  save_safetensors(path, {{"x", ones({2})}});
  EXPECT_TRUE(fs::exists(dir.file(mine)));
  EXPECT_TRUE(fs::exists(dir.file(odd)));
}

TEST(AtomicWrite, ReplacedFileKeepsItsPermissions) {
  TempDir dir("idem_atomic_write");
  const std::string path = dir.file("private.safetensors");
  save_safetensors(path, {{"x", ones({2})}});
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  save_safetensors(path, {{"x", zeros({2})}});
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

// The real thing: a child saves a module's checkpoint in a loop (every parameter filled with
// the save's version number, which also goes into the metadata) and is SIGKILLed at moments
// spread over the save cycle. After every kill the file loads strictly, all its values are one
// version, and that version is at least the last one the child reported as saved.
TEST(AtomicWrite, CheckpointSurvivesRepeatedKillDuringSave) {
  TempDir dir("idem_atomic_write");
  const std::string path = dir.file("ckpt.safetensors");
  Linear model(1024, 1024, true, {}, 3);  // 4 MiB of weights: each save takes a while
  auto fill = [&](Module& m, double v) {
    for (const Tensor& p : m.parameters()) p.copy_(full(p.shape(), v, p.options()));
  };
  fill(model, 0.0);
  save_checkpoint(model, path, {{"version", "0"}});

  int mid_write_kills = 0;
  const int kKills = 4;
  int64_t version = 0;
  for (int k = 0; k < kKills; ++k) {
    int progress[2];
    ASSERT_EQ(::pipe(progress), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      ::close(progress[0]);
      try {
        for (int64_t v = version + 1;; ++v) {
          fill(model, static_cast<double>(v));
          save_checkpoint(model, path, {{"version", std::to_string(v)}});
          (void)!::write(progress[1], "s", 1);
        }
      } catch (...) {
      }
      ::_exit(3);
    }
    ::close(progress[1]);
    // Let at least one save finish, then kill at a moment that differs from round to round.
    ASSERT_TRUE(wait_byte(progress[0], 60000)) << "round " << k << ": no save finished";
    std::this_thread::sleep_for(std::chrono::milliseconds(3 + 7 * k));
    kill_and_reap(pid);
    const int64_t saved = 1 + static_cast<int64_t>(drain(progress[0], 0).size());
    ::close(progress[0]);
    if (!temp_files(dir, "ckpt.safetensors").empty()) ++mid_write_kills;

    Linear fresh(1024, 1024, true, {}, 4);
    load_checkpoint(fresh, path, /*strict=*/true);
    const SafetensorsContents c = read_safetensors(path);
    int64_t file_version = -1;
    for (const auto& [key, value] : c.metadata)
      if (key == "version") file_version = std::stoll(value);
    EXPECT_GE(file_version, version + saved) << "round " << k << ": an older file survived";
    for (const Tensor& p : fresh.parameters()) {
      const std::vector<float> v = p.to_vector<float>();
      for (size_t i = 0; i < v.size(); i += 997)
        ASSERT_EQ(v[i], static_cast<float>(file_version)) << "round " << k << " element " << i;
      ASSERT_EQ(v.back(), static_cast<float>(file_version));
    }
    version = file_version;
  }
  // Informational: how many kills landed while a temporary file was being written.
  std::printf("[          ] %d of %d kills landed mid-write\n", mid_write_kills, kKills);
}

}  // namespace
}  // namespace idem
