// The `idem` command line (README.md#the-command-line): shared pieces of the subcommands.
//
//   main.cpp        dispatch, `idem info`, global help
//   args.cpp        option parsing with per-command option lists (unknown options are errors)
//   progress.cpp    the progress bar (a terminal) or plain periodic lines (a pipe or file)
//   tasks.cpp       the three tasks: data, model, shifts, metric
//   experiment.cpp  train / adapt / demo: the loops, the run directory, tables and plots
//   report.cpp      results.csv, results.md and the plots of a run directory
//   stats.cpp       Student's t, mean ± confidence interval, paired differences (over seeds)
//   bench.cpp       `idem bench it3|train|ops`
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace idem::cli {

// One option a command accepts: "--name", whether it takes a value, its default and help.
struct OptionSpec {
  std::string name;
  bool takes_value = true;
  std::string default_value;
  std::string help;
};

// Parsed options of one command. Values are strings until asked for; typed getters throw
// idem::Error naming the option and the bad value.
class Args {
 public:
  // Parses argv[first..]; `--help`/`-h` sets help(). Unknown options throw idem::Error with the
  // list of valid ones. Both "--opt value" and "--opt=value" work.
  Args(const std::string& command, const std::vector<OptionSpec>& specs, int argc, char** argv,
       int first);
  bool help() const { return help_; }
  bool has(const std::string& name) const { return given_.count(name) > 0; }
  bool flag(const std::string& name) const;
  std::string str(const std::string& name) const;
  int64_t integer(const std::string& name) const;
  double number(const std::string& name) const;
  // Comma-separated values ("a,b,c").
  std::vector<std::string> list(const std::string& name) const;
  std::string usage() const;
  const std::string& command() const { return command_; }

 private:
  std::string command_;
  std::vector<OptionSpec> specs_;
  std::map<std::string, std::string> given_;
  bool help_ = false;
};

// Options every command shares: --seed --device --threads --deterministic --quiet --json.
std::vector<OptionSpec> common_options();
// Applies --threads and --deterministic; returns the device (--device, default: cuda when a
// GPU is present, else cpu).
std::string resolve_device(const Args& a);

// A progress display on stderr: a redrawn bar (at most ~10 redraws/s) with rate, ETA and a
// postfix when stderr is a terminal; plain lines every few seconds otherwise; nothing with
// --quiet. NO_COLOR is honoured.
class Progress {
 public:
  Progress(std::string label, int64_t total, bool quiet);
  ~Progress();
  void update(int64_t done, const std::string& postfix = "");
  void finish(const std::string& postfix = "");

 private:
  void draw(bool final);
  std::string label_;
  int64_t total_, done_ = 0;
  bool quiet_, tty_, color_, finished_ = false;
  std::string postfix_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// Subcommands (each returns the process exit code).
int cmd_train(int argc, char** argv);
int cmd_adapt(int argc, char** argv);
int cmd_demo(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_report(int argc, char** argv);

// Build and machine facts for run directories and `idem info`: git commit, compiler, CUDA
// runtime/driver, cuDNN, GPU name, as a JSON object text.
std::string versions_json();

}  // namespace idem::cli
