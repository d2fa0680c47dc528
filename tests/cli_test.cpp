// The `idem` command line, through the real executable: train + adapt on tiny data, the run
// directory's files, the results table parses, and bad input gives a clear error and exit code.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/wait.h>

#include "apps/idem/report.h"
#include "apps/idem/stats.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "test_util.h"

#ifndef IDEM_CLI_PATH
#define IDEM_CLI_PATH ""
#endif

namespace fs = std::filesystem;
using idem::testing::TempDir;

namespace {

struct RunResult {
  int code = -1;
  std::string out;  // stdout and stderr together
};

RunResult run_cli(const std::string& args) {
  RunResult r;
  const std::string cmd = std::string(IDEM_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// `idem ARGS` fails with exit code 1 and prints `text`; returns the run for further checks.
RunResult expect_cli_error(const std::string& args, const std::string& text) {
  RunResult r = run_cli(args);
  EXPECT_EQ(r.code, 1) << args << "\n" << r.out;
  EXPECT_NE(r.out.find(text), std::string::npos) << args << "\n" << r.out;
  return r;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST(Cli, TrainThenAdaptOnATableFileWritesACompleteRun) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  TempDir dir("idem_cli");
  // y = 2·a − b + noise-free, with a header and commas: any numeric table works.
  {
    std::ofstream t(dir.path().string() + "/table.csv");
    t << "a,b,c,y\n";
    for (int i = 0; i < 300; ++i) {
      const double a = (i % 17) / 8.0 - 1, b = (i % 13) / 6.0 - 1, c = (i % 7) / 3.0 - 1;
      t << a << "," << b << "," << c << "," << 2 * a - b + 0.1 * c << "\n";
    }
  }
  const std::string run = dir.path().string() + "/run";
  RunResult tr = run_cli("train --task tabular --data " + dir.path().string() + "/table.csv --epochs 3 --device cpu --quiet --out " + run);
  ASSERT_EQ(tr.code, 0) << tr.out;
  EXPECT_NE(tr.out.find("clean test MAE"), std::string::npos) << tr.out;
  for (const char* f : {"config.json", "steps.jsonl", "checkpoint.safetensors"})
    EXPECT_TRUE(fs::exists(run + "/" + f)) << f;
  const idem::json::Value cfg = idem::json::parse(slurp(run + "/config.json"));
  EXPECT_EQ(cfg.at("task").at("task").as_string(), "tabular");
  EXPECT_TRUE(cfg.at("versions").find("git_commit") != nullptr);

  const std::string out = dir.path().string() + "/adapt";
  RunResult ad = run_cli("adapt --run " + run + " --method none,it3,it3-online --shift clean,zero:0.10 --steps 2 --device cpu --quiet --out " + out);
  ASSERT_EQ(ad.code, 0) << ad.out;
  for (const char* f : {"config.json", "steps.jsonl", "results.csv", "results.md", "metric.svg", "cost.svg",
                        "pareto.svg", "pareto.csv"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  // Accuracy against cost: one point and one CSV line per method, and the table in results.md.
  const std::string pareto = slurp(out + "/pareto.csv");
  EXPECT_EQ(pareto.rfind("method,us_per_sample,us_per_sample_ci95,metric,metric_ci95,seeds,on_front\nnone,", 0), 0u)
      << pareto;
  EXPECT_EQ(std::count(pareto.begin(), pareto.end(), '\n'), 4) << pareto;
  const std::string psvg = slurp(out + "/pareto.svg");
  size_t points = 0;
  for (size_t p = psvg.find("<g class=\"point\">"); p != std::string::npos; p = psvg.find("<g class=\"point\">", p + 1)) ++points;
  EXPECT_EQ(points, 3u);
  EXPECT_NE(psvg.find("class=\"front\""), std::string::npos);
  EXPECT_NE(slurp(out + "/results.md").find("| method | µs / sample | MAE | on the front |"), std::string::npos);
  const auto rows = idem::cli::parse_results_csv(slurp(out + "/results.csv"));
  ASSERT_EQ(rows.size(), 6u);  // 2 shifts × 3 methods
  for (const auto& r : rows) {
    EXPECT_TRUE(r.metric > 0 && r.metric < 10) << r.shift << " " << r.method << " " << r.metric;
    EXPECT_EQ(r.samples, 30);  // the last 10 % of 300 rows
    if (r.method == "it3") {
      EXPECT_EQ(r.forwards, 5.0);  // 2K + 1
      EXPECT_EQ(r.backwards, 2.0);
      EXPECT_GT(r.reset_bytes, 0.0);
    }
    if (r.method == "none") EXPECT_EQ(r.backwards, 0.0);
  }
  EXPECT_NE(slurp(out + "/results.md").find("| zero:0.10 |"), std::string::npos);
  EXPECT_NE(slurp(out + "/metric.svg").find("<svg"), std::string::npos);
  // One JSON line per adapted batch (plus nothing else in a fresh adapt directory).
  std::istringstream lines(slurp(out + "/steps.jsonl"));
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n) idem::json::parse(line);
  EXPECT_EQ(n, 6);  // 30 test rows in one batch of 32, per shift and method
  // --seeds 2 trains two models into one run, each with its own clean test line.
  const std::string run2 = dir.path().string() + "/run2";
  tr = run_cli("train --task tabular --data " + dir.path().string() + "/table.csv --epochs 1 --seeds 2 --seed 3 --device cpu --quiet --out " + run2);
  ASSERT_EQ(tr.code, 0) << tr.out;
  EXPECT_NE(tr.out.find("trained tabular seed 4: final train loss"), std::string::npos) << tr.out;
  EXPECT_TRUE(fs::exists(run2 + "/checkpoint-seed4.safetensors"));
  EXPECT_EQ(idem::json::parse(slurp(run2 + "/config.json")).at("models").as_array().size(), 2u);
}

TEST(Cli, FmnistOnBuiltInImagesEndToEnd) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  TempDir dir("idem_cli");
  RunResult r = run_cli("demo --task fmnist --data synthetic --max-train 256 --max-test 64 --width 4 --epochs 1 "
                        "--method none,bn,tent,it3 --shift clean,gaussian_noise:5 --device cpu --quiet --out " + dir.path().string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("| gaussian_noise:5 |"), std::string::npos) << r.out;
  const auto rows = idem::cli::parse_results_csv(slurp(dir.path().string() + "/results.csv"));
  EXPECT_EQ(rows.size(), 8u);
  for (const auto& row : rows) EXPECT_TRUE(row.metric >= 0 && row.metric <= 100);
}

TEST(Cli, EntropyFamilyRunsOnFmnistAndIsAClearErrorOnRegression) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  TempDir dir("idem_cli");
  RunResult r = run_cli("demo --task fmnist --data synthetic --max-train 128 --max-test 32 --width 4 --epochs 1 "
                        "--method all --shift clean --device cpu --quiet --out " + dir.path().string());
  ASSERT_EQ(r.code, 0) << r.out;
  const auto rows = idem::cli::parse_results_csv(slurp(dir.path().string() + "/results.csv"));
  std::set<std::string> methods;
  for (const auto& row : rows) methods.insert(row.method);
  for (const char* m : {"eata", "deyo", "memo"}) EXPECT_EQ(methods.count(m), 1u) << m;
  // Regression: `all` leaves the entropy family out; naming one is an error that says why.
  TempDir reg("idem_cli");
  r = run_cli("demo --task tabular --quick --method eata --shift clean --device cpu --quiet --out " + reg.path().string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("eata needs a classification model"), std::string::npos) << r.out;
}

namespace {
// The cells "a ± b" (or "a") of the line of `md` that starts with `prefix`, searching from the
// first occurrence of `after`; bold marks dropped.
std::vector<std::pair<double, double>> md_cells(const std::string& md, const std::string& after,
                                                const std::string& prefix) {
  std::vector<std::pair<double, double>> out;
  const size_t from = md.find(after);
  if (from == std::string::npos) return out;
  std::istringstream is(md.substr(from));
  for (std::string line; std::getline(is, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::stringstream cells(line.substr(prefix.size()));
    for (std::string c; std::getline(cells, c, '|');) {
      c.erase(std::remove(c.begin(), c.end(), '*'), c.end());
      if (c.find_first_not_of(' ') == std::string::npos) continue;
      const size_t pm = c.find("±");
      out.push_back({std::stod(c), pm == std::string::npos ? NAN : std::stod(c.substr(pm + 2))});
    }
    break;
  }
  return out;
}

// The metric per seed of (shift, method), in seed order.
std::vector<double> per_seed(const std::vector<idem::cli::ResultRow>& rows, const std::string& shift,
                             const std::string& method) {
  std::vector<double> v;
  for (const auto& r : rows)
    if (r.shift == shift && r.method == method) v.push_back(r.metric);
  return v;
}
}  // namespace

TEST(Cli, SeedsGiveOneRowPerSeedAndIntervalsWithPairedDeltas) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  TempDir dir("idem_cli_seeds");
  const std::string run = dir.path().string() + "/demo";
  // The quick tabular demo trains in well under a second per seed.
  RunResult r = run_cli("demo --task tabular --quick --seeds 2 --seed 5 --method none,bn,it3 --shift clean,zero:0.10 "
                        "--device cpu --out " + run);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("seed 6 (2/2)"), std::string::npos) << r.out;  // progress per seed
  for (const char* f : {"checkpoint.safetensors", "checkpoint-seed6.safetensors", "results.csv", "results.md", "metric.svg"})
    EXPECT_TRUE(fs::exists(run + "/" + f)) << f;
  const auto rows = idem::cli::parse_results_csv(slurp(run + "/results.csv"));
  ASSERT_EQ(rows.size(), 12u);  // 2 seeds × 2 shifts × 3 methods
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].seed, i < 6 ? 5u : 6u) << i;
  // The two seeds trained different models.
  const auto none_clean = per_seed(rows, "clean", "none");
  ASSERT_EQ(none_clean.size(), 2u);
  EXPECT_NE(none_clean[0], none_clean[1]);
  const idem::json::Value cfg = idem::json::parse(slurp(run + "/config.json"));
  ASSERT_EQ(cfg.at("models").as_array().size(), 2u);
  EXPECT_EQ(cfg.at("models").as_array()[1].at("checkpoint").as_string(), "checkpoint-seed6.safetensors");
  EXPECT_EQ(cfg.at("task").at("seed").as_int(), 5);  // the data comes from --seed alone
  // The summary: mean ± CI per cell, and Δ it3 over none as the paired per-seed differences.
  // (results.csv keeps 4 decimals, the table 3; t_{0.975,1} = 12.7 magnifies the rounding.)
  const std::string md = slurp(run + "/results.md");
  EXPECT_NE(r.out.find("Δ over none"), std::string::npos) << "the printed table has the Δ columns";
  EXPECT_NE(r.out.find("Δ over bn"), std::string::npos);
  const auto table = md_cells(md, "MAE per shift", "| clean |");
  ASSERT_EQ(table.size(), 3u) << md;
  const auto none = idem::cli::stats::mean_ci(none_clean);
  EXPECT_NEAR(table[0].first, none.mean, 1e-3) << md;
  EXPECT_NEAR(table[0].second, none.half_width, 2e-3) << md;
  const auto delta = idem::cli::stats::paired_difference(per_seed(rows, "zero:0.10", "it3"), per_seed(rows, "zero:0.10", "none"));
  const auto dcells = md_cells(md, "Δ over none", "| zero:0.10 |");
  ASSERT_EQ(dcells.size(), 2u) << md;  // bn, it3
  EXPECT_NEAR(dcells[1].first, delta.mean, 1e-3) << md;
  EXPECT_NEAR(dcells[1].second, delta.half_width, 2e-3) << md;
  ASSERT_EQ(md_cells(md, "Δ over bn", "| clean |").size(), 1u) << md;  // it3 only

  // adapt evaluates every model of the run (auto), or the first N; one seed has no interval.
  const std::string out = dir.path().string() + "/adapt";
  r = run_cli("adapt --run " + run + " --method none,it3 --shift clean --device cpu --quiet --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto arows = idem::cli::parse_results_csv(slurp(out + "/results.csv"));
  ASSERT_EQ(arows.size(), 4u);
  EXPECT_EQ(arows[0].seed, 5u);
  EXPECT_EQ(arows[3].seed, 6u);
  EXPECT_EQ(per_seed(arows, "clean", "none"), none_clean);  // the same models, reloaded
  r = run_cli("adapt --run " + run + " --seeds 1 --method none,it3 --shift clean --device cpu --quiet --out " + out + "1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(idem::cli::parse_results_csv(slurp(out + "1/results.csv")).size(), 2u);
  const std::string md1 = slurp(out + "1/results.md");
  EXPECT_NE(md1.find("one seed (5): no confidence interval"), std::string::npos) << md1;
  EXPECT_EQ(md1.find("±"), std::string::npos) << md1;

  // Bad counts are clear errors.
  r = run_cli("adapt --run " + run + " --seeds 3 --device cpu --quiet --out " + out + "3");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("holds 2 trained model(s) (seeds 5, 6)"), std::string::npos) << r.out;
  for (const char* bad : {"0", "-2", "101", "two"}) {
    r = run_cli(std::string("demo --task tabular --quick --device cpu --quiet --seeds ") + bad + " --out " + out + "x");
    EXPECT_EQ(r.code, 1) << bad;
    EXPECT_NE(r.out.find("--seeds must be a whole number from 1 to 100 (or auto), got '" + std::string(bad) + "'"),
              std::string::npos) << r.out;
  }
  EXPECT_FALSE(fs::exists(out + "x")) << "a bad --seeds is refused before anything is written";
}

TEST(Cli, BadInputIsAClearErrorWithExitCodeOne) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  expect_cli_error("train --task tabluar --device cpu", "unknown task 'tabluar'");
  expect_cli_error("adapt --run /nonexistent/run --device cpu", "/nonexistent/run");
  expect_cli_error("train --epochz 3", "unknown option --epochz");
  expect_cli_error("demo --task tabular --shift zero:banana --device cpu --quiet --epochs 1",
                   "zero:banana");
  expect_cli_error("bench it3 --model resnet --device cpu", "unknown model 'resnet'");
}

TEST(Cli, BenchTrainExportWritesTheStepsItTimes) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  TempDir dir("idem_cli_train_export");
  const std::string out = dir.path().string() + "/case";
  RunResult r = run_cli("bench train --model mlp_tab --batch 4 --steps 2 --device cpu --reps 2 --warmup 1 --json "
                        "--export " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto line = r.out.find("{\"bench\":\"train\"");
  ASSERT_NE(line, std::string::npos) << r.out;
  const auto v = idem::json::parse(r.out.substr(line, r.out.find('\n', line) - line));
  EXPECT_GT(v.at("us_per_step_median").as_double(), 0.0);
  const auto weights = idem::load_safetensors(out + "/weights.safetensors");
  const auto trained = idem::load_safetensors(out + "/trained.safetensors");
  const auto inputs = idem::load_safetensors(out + "/inputs.safetensors");
  const auto outputs = idem::load_safetensors(out + "/outputs.safetensors");
  const auto grads = idem::load_safetensors(out + "/grads.safetensors");
  ASSERT_EQ(weights.size(), 8u);  // net.layers.{0,2,4,6}.{weight,bias}
  ASSERT_EQ(trained.size(), weights.size());
  bool moved = false;
  for (size_t i = 0; i < weights.size(); ++i) {
    EXPECT_EQ(weights[i].first, trained[i].first);
    const auto a = weights[i].second.to_vector<float>(), b = trained[i].second.to_vector<float>();
    ASSERT_EQ(a.size(), b.size());
    for (size_t j = 0; j < a.size(); ++j) moved = moved || a[j] != b[j];
  }
  EXPECT_TRUE(moved) << "two Adam steps left every weight as it was";
  ASSERT_EQ(grads.size(), 2 * weights.size());  // every parameter's gradient, per step
  for (size_t i = 0; i < grads.size(); ++i) {
    const std::string prefix = "step" + std::to_string(i / weights.size()) + ".";
    ASSERT_EQ(grads[i].first.rfind(prefix, 0), 0u) << grads[i].first;
    const std::string name = grads[i].first.substr(prefix.size());
    const auto w = std::find_if(weights.begin(), weights.end(), [&](const auto& kv) { return kv.first == name; });
    ASSERT_NE(w, weights.end()) << grads[i].first;
    EXPECT_EQ(grads[i].second.shape(), w->second.shape());
  }
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_EQ(inputs[0].first, "x");
  EXPECT_EQ(inputs[0].second.shape(), (idem::Shape{4, 13}));
  EXPECT_EQ(inputs[1].first, "y");
  EXPECT_EQ(inputs[1].second.shape(), (idem::Shape{4, 1}));
  ASSERT_EQ(outputs.size(), 2u);
  EXPECT_EQ(outputs[0].first, "loss");
  EXPECT_EQ(outputs[0].second.shape(), (idem::Shape{2}));
  for (float l : outputs[0].second.to_vector<float>()) EXPECT_TRUE(std::isfinite(l) && l > 0) << l;
  EXPECT_EQ(outputs[1].first, "pred");
  EXPECT_EQ(outputs[1].second.shape(), (idem::Shape{4, 1}));
  r = run_cli("bench train --model mlp_tab --steps 0 --device cpu --reps 1 --warmup 1 --export " + out);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("--steps >= 1"), std::string::npos) << r.out;
}

// The first JSON value of `out` that starts with `start` ({ or [), parsed.
idem::json::Value json_in(const std::string& out, const std::string& start) {
  const auto at = out.find(start);
  if (at == std::string::npos) return idem::json::Value();
  return idem::json::parse(out.substr(at, out.find('\n', at) - at));
}

TEST(Cli, BenchIt3TimesTheMethodNamedByMethod) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  // tent on the BatchNorm CNN: one entropy pass and one backward, one Adam step per batch.
  RunResult r = run_cli("bench it3 --method tent --model bn_cnn --reps 3 --warmup 1 --json --device cpu");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto v = json_in(r.out, "{\"bench\":\"it3\"");
  ASSERT_TRUE(v.is_object()) << r.out;
  EXPECT_EQ(v.at("method").as_string(), "tent");
  EXPECT_EQ(v.at("model").as_string(), "bn_cnn");
  EXPECT_EQ(v.at("path").as_string(), "eager");
  EXPECT_EQ(v.at("reps").as_int(), 3);
  const double med = v.at("us_per_batch_median").as_double();
  EXPECT_GT(med, 0.0);
  EXPECT_LE(v.at("us_per_batch_p10").as_double(), med);
  EXPECT_GE(v.at("us_per_batch_p90").as_double(), med);
  // On the CPU the host time is the whole call, so the two medians are one sample's.
  EXPECT_EQ(v.at("us_host_per_batch_median").as_double(), med);
  EXPECT_EQ(v.at("forwards").as_int(), 2);  // the entropy pass, then the prediction
  EXPECT_EQ(v.at("backwards").as_int(), 1);
  EXPECT_EQ(v.at("optimizer_steps").as_int(), 1);
  EXPECT_EQ(v.at("launches_per_batch").as_int(), 0);  // no GPU launch on the CPU
  EXPECT_EQ(v.at("kernels_per_batch").as_int(), 0);
  EXPECT_FALSE(v.at("kernels_counted").as_bool());  // counted from a CUDA graph capture only
  EXPECT_GT(v.at("reset_bytes").as_int(), 0);  // tent resets per batch
  // The text line says the same.
  r = run_cli("bench it3 --method none --reps 2 --warmup 1 --device cpu");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("none mlp_tab batch 8 K 1 on cpu (path eager): "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" 0 launches/batch, 1 forwards, 0 backwards, 0 steps"), std::string::npos) << r.out;
}

// --fused-head reaches the Adapter's options (auto by default) and a bad value is an error that
// lists the choices.
TEST(Cli, BenchIt3FusedHeadFlag) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  for (const std::string mode : {"", "on", "off", "auto"}) {
    const std::string flag = mode.empty() ? "" : " --fused-head " + mode;
    RunResult r = run_cli("bench it3 --model cnn --batch 2 --reps 2 --warmup 1 --json --device cpu" + flag);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto v = json_in(r.out, "{\"bench\":\"it3\"");
    ASSERT_TRUE(v.is_object()) << r.out;
    EXPECT_EQ(v.at("options").at("fused_head").as_string(), mode.empty() ? "auto" : mode) << flag;
  }
  expect_cli_error("bench it3 --model cnn --device cpu --fused-head maybe",
                   "unknown fused mode 'maybe' (expected auto, on or off)");
}

TEST(Cli, BenchIt3MethodAllAndBadMethods) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  // An unknown name lists every valid one.
  RunResult r = expect_cli_error(
      "bench it3 --method tnet --device cpu",
      "unknown --method 'tnet' (expected one of none, bn, tent, actmad, it3, it3-online, "
      "random-step, eata, deyo, memo, ttt, ttt++");
  EXPECT_NE(r.out.find(", or all)"), std::string::npos) << r.out;
  // A method the model cannot run, and a path the method cannot take, name both.
  expect_cli_error("bench it3 --method tent --model mlp_tab --device cpu",
                   "tent does not apply to --model mlp_tab: it needs a classification model");
  expect_cli_error("bench it3 --method actmad --path fused --device cpu",
                   "--path fused cannot run actmad on mlp_tab");
  expect_cli_error("bench it3 --method ttt --model sage --device cpu",
                   "ttt does not apply to --model sage");
  expect_cli_error("bench it3 --method all --export /nonexistent/x --device cpu",
                   "--export writes one case");

  // --method all on the regression MLP: the methods without classes, in table order, each with
  // its own counts; the rest are named as skipped.
  r = run_cli("bench it3 --method all --model mlp_tab --steps 2 --reps 2 --warmup 1 --json --device cpu");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto all = json_in(r.out, "[{");
  ASSERT_TRUE(all.is_array()) << r.out;
  std::vector<std::string> names;
  for (const auto& v : all.as_array()) {
    names.push_back(v.at("method").as_string());
    EXPECT_GT(v.at("us_per_batch_median").as_double(), 0.0) << names.back();
    const bool adapts = names.back() != "none" && names.back() != "bn";
    EXPECT_EQ(v.at("optimizer_steps").as_int(), adapts ? 2 : 0) << names.back();
    EXPECT_EQ(v.at("backwards").as_int(), adapts ? 2 : 0) << names.back();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"none", "bn", "actmad", "it3", "it3-online", "random-step"})) << r.out;
  EXPECT_EQ(all.as_array()[3].at("forwards").as_int(), 5);  // it3: 2 per step, then the prediction
  for (const char* skipped : {"tent", "eata", "deyo", "memo", "ttt", "ttt++"})
    EXPECT_NE(r.out.find(std::string("note: --method all skips it: ") + skipped + " does not apply"), std::string::npos)
        << skipped << "\n" << r.out;
}

// `bench it3 --task T` times what `idem adapt` runs on T: the same options (every knob but the
// two the bench owns), the same model, T's test batch and K by default.
TEST(Cli, BenchIt3TaskTimesTheAdaptationTheTaskRuns) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  TempDir dir("idem_cli_bench_task");
  struct Case {
    std::string task, train_args;
    int64_t batch;  // --batch given to the bench (0: the task's default)
  };
  for (const Case& c : {Case{"fmnist", "--data synthetic --max-train 128 --max-test 32", 4},
                        Case{"tabular", "--max-train 400", 0}}) {
    SCOPED_TRACE(c.task);
    const std::string run = (dir.path() / (c.task + "-run")).string();
    const std::string out = (dir.path() / (c.task + "-adapt")).string();
    RunResult r = run_cli("train --task " + c.task + " " + c.train_args + " --epochs 1 --device cpu --quiet --out " + run);
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli("adapt --run " + run + " --method it3 --shift clean --device cpu --quiet --out " + out);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto config = idem::json::parse(slurp(fs::path(out) / "config.json"));
    const auto& adapt = config.at("adapt");
    const auto& used = adapt.at("methods").as_array().at(0);
    ASSERT_EQ(used.at("method").as_string(), "it3");

    r = run_cli("bench it3 --task " + c.task + (c.batch ? " --batch " + std::to_string(c.batch) : std::string()) +
                " --reps 2 --warmup 1 --json --device cpu");
    ASSERT_EQ(r.code, 0) << r.out;
    const auto v = json_in(r.out, "{\"bench\":\"it3\"");
    ASSERT_TRUE(v.is_object()) << r.out;
    EXPECT_EQ(v.at("task").as_string(), c.task);
    EXPECT_EQ(v.at("model").as_string(), "task:" + c.task);
    EXPECT_GT(v.at("us_per_batch_median").as_double(), 0.0);
    const auto& timed = v.at("options");
    // Every knob that `idem adapt` recorded, except the two the bench sets: no loss read back
    // inside the timed adaptation, and --path (eager here) decides the fused call.
    for (const auto& [key, value] : used.as_object()) {
      if (key == "check_finite" || key == "fused") continue;
      ASSERT_NE(timed.find(key), nullptr) << key;
      EXPECT_EQ(idem::json::dump(timed.at(key)), idem::json::dump(value)) << key;
    }
    EXPECT_FALSE(timed.at("check_finite").as_bool());
    EXPECT_EQ(timed.at("fused").as_string(), "off");
    EXPECT_EQ(v.at("steps").as_int(), used.at("steps").as_int());
    if (c.batch == 0) EXPECT_EQ(v.at("batch").as_int(), adapt.at("batch").as_int());  // the task's test batch
    EXPECT_EQ(v.at("forwards").as_int(), 2 * used.at("steps").as_int() + 1);
  }

  // fmnist: the bench's bn_cnn is the same network (same parameter count and input), adapted
  // with other options (running statistics and lr 1e-3 against the task's batch and 1e-4).
  RunResult r = run_cli("bench it3 --task fmnist --batch 4 --reps 1 --warmup 1 --json --device cpu");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto task = json_in(r.out, "{\"bench\":\"it3\"");
  r = run_cli("bench it3 --model bn_cnn --batch 4 --reps 1 --warmup 1 --json --device cpu");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto bench = json_in(r.out, "{\"bench\":\"it3\"");
  ASSERT_TRUE(task.is_object() && bench.is_object()) << r.out;
  EXPECT_EQ(task.at("parameters").as_int(), bench.at("parameters").as_int());
  EXPECT_EQ(idem::json::dump(task.at("input")), "[4,1,28,28]");
  EXPECT_EQ(idem::json::dump(bench.at("input")), "[4,1,28,28]");
  EXPECT_EQ(task.at("options").at("bn_mode").as_string(), "batch");
  EXPECT_EQ(bench.at("options").at("bn_mode").as_string(), "running");
  EXPECT_DOUBLE_EQ(task.at("options").at("lr").as_double(), 1e-4);
  EXPECT_DOUBLE_EQ(bench.at("options").at("lr").as_double(), 1e-3);
  EXPECT_EQ(bench.at("task").as_string(), "");

  // --steps, and a --batch beyond the stand-in test set (tabular's has a few dozen rows: cycled).
  r = run_cli("bench it3 --task tabular --steps 2 --batch 70 --reps 1 --warmup 1 --json --device cpu");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto t = json_in(r.out, "{\"bench\":\"it3\"");
  ASSERT_TRUE(t.is_object()) << r.out;
  EXPECT_EQ(t.at("steps").as_int(), 2);
  EXPECT_EQ(t.at("options").at("steps").as_int(), 2);
  EXPECT_EQ(idem::json::dump(t.at("input")), "[70,10]");
}

TEST(Cli, BenchIt3TaskRefusesWhatTheTaskDoesNotRun) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  expect_cli_error("bench it3 --task fmnsit --device cpu",
                   "unknown --task 'fmnsit' (expected fmnist, tabular or airfoil)");
  expect_cli_error(
      "bench it3 --task fmnist --method ttt --device cpu",
      "the fmnist task's demo does not run ttt: the model has no rotation head (train with --aux "
      "rotation)");
  expect_cli_error("bench it3 --task tabular --method tent --device cpu",
                   "the tabular task's demo does not run tent: it needs a classification task");
  expect_cli_error("bench it3 --task fmnist --model bn_cnn --device cpu",
                   "--task fmnist times the fmnist task's own model: drop --model bn_cnn");
  expect_cli_error("bench train --task tabular --device cpu", "--task applies to bench it3 only");
  // --method all: what `idem adapt --method all` runs on the task, and a note for the rest.
  RunResult r =
      run_cli("bench it3 --task tabular --method all --reps 1 --warmup 1 --json --device cpu");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto all = json_in(r.out, "[{");
  ASSERT_TRUE(all.is_array()) << r.out;
  std::vector<std::string> names;
  for (const auto& v : all.as_array()) names.push_back(v.at("method").as_string());
  EXPECT_EQ(names, (std::vector<std::string>{"none", "bn", "actmad", "it3", "it3-online", "random-step"})) << r.out;
  EXPECT_NE(r.out.find("note: --method all skips it: the tabular task's demo does not run memo"), std::string::npos)
      << r.out;
}

TEST(Cli, ReportRendersARunAgainFromItsCsv) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  TempDir dir("idem_cli_report");
  const std::string run = (dir.path() / "run").string(), again = (dir.path() / "again").string();
  RunResult r = run_cli("demo --task tabular --quick --seeds 2 --method none,it3 --shift clean,zero:0.10 "
                        "--device cpu --quiet --out " + run);
  ASSERT_EQ(r.code, 0) << r.out;
  // From the run directory: the task comes from its config.json; the CSVs come out the same.
  r = run_cli("report --results " + run + " --out " + again);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(slurp(fs::path(again) / "results.csv"), slurp(fs::path(run) / "results.csv"));
  // pareto.csv from the CSV's rounded cells (4 decimals of the metric, 2 of µs): the same
  // methods and front, the numbers to that rounding.
  auto cells = [](const std::string& text) {
    std::vector<std::vector<std::string>> rows;
    std::istringstream is(text);
    for (std::string line; std::getline(is, line);) {
      rows.emplace_back();
      std::istringstream ls(line);
      for (std::string c; std::getline(ls, c, ',');) rows.back().push_back(c);
    }
    return rows;
  };
  const auto want = cells(slurp(fs::path(run) / "pareto.csv")), got = cells(slurp(fs::path(again) / "pareto.csv"));
  ASSERT_EQ(got.size(), want.size());
  ASSERT_EQ(got.size(), 3u);  // header, none, it3
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size());
    EXPECT_EQ(got[i][0], want[i][0]);      // method
    EXPECT_EQ(got[i].back(), want[i].back());  // on the front
    if (i == 0) continue;
    EXPECT_NEAR(std::stod(got[i][1]), std::stod(want[i][1]), 0.01) << "µs per sample of " << got[i][0];
    EXPECT_NEAR(std::stod(got[i][3]), std::stod(want[i][3]), 1e-3) << "metric of " << got[i][0];
  }
  for (const char* f : {"results.md", "metric.svg", "cost.svg", "pareto.svg"})
    EXPECT_TRUE(fs::exists(fs::path(again) / f)) << f;
  const std::string md = slurp(fs::path(again) / "results.md");
  EXPECT_NE(md.find("MAE"), std::string::npos);
  EXPECT_NE(md.find("on the front"), std::string::npos);
  EXPECT_NE(r.out.find("report files in " + again), std::string::npos) << r.out;
  // A bare CSV needs --task; a bad task, a missing file and no --results are clear errors.
  fs::copy_file(fs::path(run) / "results.csv", dir.path() / "bare.csv");
  r = run_cli("report --results " + (dir.path() / "bare.csv").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("pass --task"), std::string::npos) << r.out;
  r = run_cli("report --results " + (dir.path() / "bare.csv").string() + " --task speech");
  EXPECT_NE(r.out.find("unknown task 'speech'"), std::string::npos) << r.out;
  r = run_cli("report --results " + (dir.path() / "nothing.csv").string() + " --task tabular");
  EXPECT_NE(r.out.find("cannot read results file"), std::string::npos) << r.out;
  r = run_cli("report");
  EXPECT_NE(r.out.find("--results is required"), std::string::npos) << r.out;
  r = run_cli("report --results " + (dir.path() / "bare.csv").string() + " --task tabular");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(fs::exists(dir.path() / "pareto.svg"));  // next to the CSV by default
}

TEST(Cli, HelpForEveryCommand) {
  if (std::string(IDEM_CLI_PATH).empty()) GTEST_SKIP() << "the idem executable was not built";
  for (const char* c : {"demo", "train", "adapt", "bench", "report", "info"}) {
    RunResult r = run_cli(std::string(c) + " --help");
    EXPECT_EQ(r.code, 0) << c << ": " << r.out;
    EXPECT_NE(r.out.find("--"), std::string::npos) << c;
  }
  RunResult r = run_cli("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("demo"), std::string::npos);
}
