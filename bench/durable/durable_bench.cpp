// The durable store against raw twins on the same disk, in the same run,
// alternating which goes first; each line gives both medians and the
// median of the per-run ratios (docs/benchmarks.md, "Durable store").
//
//   courier_bench_durable [--runs N] [--dir PATH] [--scenario NAME]
//                         [--messages N] [--recovery-messages N]
//                         [--window-us N] [--quiet-us N] [--in-flight N]
//                         [--quick]
//
// Scenarios:
//   fsync_each    one writer, each append waits for its fsync (window 0):
//                 appends/s and commit latency p50/p99; raw twin: pwrite
//                 of a record of the same size + fdatasync, in a loop
//   group_commit  64 B payloads, at most 200 appends in flight (the next
//                 batch forms during the last one's fsync; --in-flight N),
//                 batches closed at 100 records (max_batch_messages, a 5 ms
//                 window as the bound): messages/s; raw twin: 100 records of
//                 the same on-disk size per pwrite + one fdatasync; and
//                 SQLite (WAL, synchronous=FULL, 100 rows per transaction)
//   latency       4 writers waiting for their acks, group commit window W
//                 (a batch closes after --quiet-us without an append, 100
//                 by default, 0: it waits out the window):
//                 p99 of append-to-ack, against W + 2 x the raw commit p99;
//                 also against a raw twin that idles W before each commit
//                 of 4 records (not the bar: what the disk does after a
//                 pause)
//   recovery      open() of a store holding a million 64 B messages,
//                 against a raw sequential read() of the same files, both
//                 from the disk (the files are dropped from the page cache
//                 with posix_fadvise before each)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include "args.hpp"
#include "courier/durable/store.hpp"
#include "stats.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using courier::bench::arg;
using courier::bench::has_flag;
using courier::bench::json_line;
using courier::bench::median;
using courier::bench::quantile;
using courier::bench::text_arg;
namespace durable = courier::durable;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

double us_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t)
    .count();
}

/// A fresh directory under the bench root, removed when done.
struct scratch {
  explicit scratch(const std::string& root) {
    static int n = 0;
    path
      = root + "/run-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
    std::filesystem::create_directories(path);
  }
  ~scratch() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::string path;
};

/// On-disk size of a store record holding a payload of `payload` bytes
/// in queue "q": record header 24 + message body 103 + payload
/// (docs/disk-format.md).
std::size_t record_size(std::size_t payload) {
  return 24 + 103 + payload;
}

/// --quiet-us: store_options::group_commit_quiet (its default if absent).
std::optional<std::chrono::microseconds> quiet_option;

std::unique_ptr<durable::store> open_store(const std::string& dir,
                                           std::chrono::microseconds window,
                                           std::size_t batch_messages = 0) {
  durable::store_options o;
  o.directory = dir;
  o.group_commit_window = window;
  if (quiet_option)
    o.group_commit_quiet = *quiet_option;
  o.max_batch_messages = batch_messages;
  o.queue_quota = {10'000'000, 8ull << 30};
  o.store_quota = {10'000'000, 8ull << 30};
  o.compact_automatically = false;
  o.expiry_interval = std::chrono::milliseconds{1000};
  auto s = durable::store::open(o);
  if (!s) {
    std::cerr << "open: " << s.error().to_string() << "\n";
    std::exit(1);
  }
  return std::move(*s);
}

struct figures {
  double rate = 0;
  double p50_us = 0;
  double p99_us = 0;
};

// -- (a) one fsync per message ------------------------------------------------

figures courier_fsync_each(const std::string& root, int n, std::size_t size) {
  scratch dir{root};
  auto s = open_store(dir.path, {});
  std::string payload(size, 'p');
  std::vector<double> lat;
  lat.reserve(n);
  auto start = clock_type::now();
  for (int i = 0; i < n; ++i) {
    auto t = clock_type::now();
    auto r = s->append_and_wait("q", payload);
    lat.push_back(us_since(t));
    if (!r)
      std::exit(2);
  }
  figures f{n / seconds_since(start), quantile(lat, 0.5), quantile(lat, 0.99)};
  return f;
}

/// `pause`: idle this long before each commit (what a group commit window
/// does to the disk; the figures count only the commits).
figures raw_fsync_each(const std::string& root, int n, std::size_t record,
                       std::chrono::microseconds pause = {}) {
  scratch dir{root};
  auto path = dir.path + "/raw.log";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  std::string bytes(record, 'r');
  std::vector<double> lat;
  lat.reserve(n);
  off_t at = 0;
  auto start = clock_type::now();
  for (int i = 0; i < n; ++i) {
    if (pause.count() > 0)
      std::this_thread::sleep_for(pause);
    auto t = clock_type::now();
    if (::pwrite(fd, bytes.data(), bytes.size(), at) < 0 || ::fdatasync(fd))
      std::exit(3);
    at += static_cast<off_t>(bytes.size());
    lat.push_back(us_since(t));
  }
  figures f{n / seconds_since(start), quantile(lat, 0.5), quantile(lat, 0.99)};
  ::close(fd);
  return f;
}

// -- (b) group commit ---------------------------------------------------------

double courier_group(const std::string& root, int n, std::size_t size,
                     int batch, int in_flight) {
  scratch dir{root};
  // The window only bounds the wait: a batch closes at `batch` records.
  auto s = open_store(dir.path, std::chrono::milliseconds{5},
                      static_cast<std::size_t>(batch));
  std::string payload(size, 'p');
  // The producer refills by the batch: it sleeps at `in_flight` and is
  // woken once when a batch's acknowledgements bring it down to
  // `in_flight - batch` (or to 0), not once per acknowledgement.
  std::atomic<int> outstanding{0};
  std::atomic<int> failed{0};
  auto wait_below = [&](int limit) {
    for (int v = outstanding.load(); v > limit; v = outstanding.load())
      outstanding.wait(v);
  };
  auto start = clock_type::now();
  for (int i = 0; i < n; ++i) {
    wait_below(in_flight - 1);
    ++outstanding;
    s->append("q", payload, {},
              [&](courier::expected<durable::append_result> r) {
                if (!r)
                  ++failed;
                auto left = outstanding.fetch_sub(1) - 1;
                if (left == in_flight - batch || left == 0)
                  outstanding.notify_one();
              });
  }
  wait_below(0);
  auto rate = n / seconds_since(start);
  if (failed != 0)
    std::exit(4);
  return rate;
}

double raw_group(const std::string& root, int n, std::size_t record,
                 int batch) {
  scratch dir{root};
  auto path = dir.path + "/raw.log";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  std::string bytes(record * batch, 'r');
  off_t at = 0;
  auto start = clock_type::now();
  for (int i = 0; i < n; i += batch) {
    if (::pwrite(fd, bytes.data(), bytes.size(), at) < 0 || ::fdatasync(fd))
      std::exit(5);
    at += static_cast<off_t>(bytes.size());
  }
  auto rate = n / seconds_since(start);
  ::close(fd);
  return rate;
}

double sqlite_group(const std::string& root, int n, std::size_t size,
                    int batch) {
  scratch dir{root};
  sqlite3* db = nullptr;
  auto path = dir.path + "/bench.db";
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK)
    std::exit(6);
  auto exec = [&](const char* sql) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
      std::cerr << "sqlite: " << sqlite3_errmsg(db) << "\n";
      std::exit(6);
    }
  };
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=FULL");
  exec("CREATE TABLE q (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)");
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO q (payload) VALUES (?)", -1, &insert,
                     nullptr);
  std::string payload(size, 'p');
  auto start = clock_type::now();
  for (int i = 0; i < n; i += batch) {
    exec("BEGIN");
    for (int j = 0; j < batch; ++j) {
      sqlite3_bind_blob(insert, 1, payload.data(),
                        static_cast<int>(payload.size()), SQLITE_STATIC);
      if (sqlite3_step(insert) != SQLITE_DONE)
        std::exit(6);
      sqlite3_reset(insert);
    }
    exec("COMMIT");
  }
  auto rate = n / seconds_since(start);
  sqlite3_finalize(insert);
  sqlite3_close(db);
  return rate;
}

// -- (c) latency under group commit -------------------------------------------

figures courier_latency(const std::string& root, int n, std::size_t size,
                        std::chrono::microseconds window, int writers) {
  scratch dir{root};
  auto s = open_store(dir.path, window);
  std::string payload(size, 'p');
  std::vector<std::vector<double>> lat(writers);
  std::vector<std::thread> threads;
  auto start = clock_type::now();
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      for (int i = 0; i < n / writers; ++i) {
        auto t = clock_type::now();
        if (!s->append_and_wait("q", payload))
          std::exit(7);
        lat[w].push_back(us_since(t));
      }
    });
  for (auto& t : threads)
    t.join();
  auto rate = n / seconds_since(start);
  std::vector<double> all;
  for (auto& l : lat)
    all.insert(all.end(), l.begin(), l.end());
  return {rate, quantile(all, 0.5), quantile(all, 0.99)};
}

// -- (d) recovery -------------------------------------------------------------

void fill(const std::string& dir, int n, std::size_t size) {
  auto s = open_store(dir, {});
  std::string payload(size, 'p');
  std::counting_semaphore<1 << 20> slots{4096};
  for (int i = 0; i < n; ++i) {
    slots.acquire();
    s->append("q", payload, {},
              [&](courier::expected<durable::append_result> r) {
                if (!r)
                  std::exit(8);
                slots.release();
              });
  }
  for (int i = 0; i < 4096; ++i)
    slots.acquire();
}

/// Drops `dir`'s files (only them) from the page cache, so both twins
/// read from the disk.
void drop_cache(const std::string& dir) {
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

double courier_recovery(const std::string& dir, int n) {
  drop_cache(dir);
  auto start = clock_type::now();
  durable::store_options o;
  o.directory = dir;
  o.queue_quota = {10'000'000, 8ull << 30};
  o.store_quota = {10'000'000, 8ull << 30};
  auto s = durable::store::open(o);
  auto took = seconds_since(start);
  if (!s || s->get()->recovery().messages != static_cast<std::uint64_t>(n)) {
    std::cerr << "recovery found the wrong number of messages\n";
    std::exit(9);
  }
  return took;
}

double raw_read(const std::string& dir) {
  std::vector<std::string> files;
  for (auto& e : std::filesystem::directory_iterator(dir))
    files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  drop_cache(dir);
  std::vector<char> buf(1 << 20);
  std::size_t total = 0;
  auto start = clock_type::now();
  for (auto& f : files) {
    int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
    ssize_t got;
    while ((got = ::read(fd, buf.data(), buf.size())) > 0)
      total += static_cast<std::size_t>(got);
    ::close(fd);
  }
  auto took = seconds_since(start);
  if (total == 0)
    std::exit(10);
  return took;
}

/// Runs `a` and `b` once each, `a` first in even runs, `b` first in odd
/// ones.
template <class A, class B>
void alternate(int run, A&& a, B&& b) {
  if (run % 2 == 0) {
    a();
    b();
  } else {
    b();
    a();
  }
}

std::string ratio_list(const std::vector<double>& r) {
  std::string out;
  char b[32];
  for (auto v : r) {
    std::snprintf(b, sizeof b, "%s%.3f", out.empty() ? "" : " ", v);
    out += b;
  }
  return out;
}

} // namespace

int main(int argc, char** argv) {
  bool quick = has_flag(argc, argv, "--quick");
  int runs = static_cast<int>(arg(argc, argv, "--runs", quick ? 1 : 7));
  std::string root = text_arg(argc, argv, "--dir", "/var/tmp");
  root += "/courier-bench-durable";
  std::string only = text_arg(argc, argv, "--scenario", "");
  int messages
    = static_cast<int>(arg(argc, argv, "--messages", quick ? 200 : 2000));
  int group_messages = quick ? 20'000 : 200'000;
  // Two batches in flight: the next batch forms while the last one's
  // fsync runs, as with concurrent producers; each fsync still covers 100.
  int group_in_flight = static_cast<int>(arg(argc, argv, "--in-flight", 200));
  int recovery_messages = static_cast<int>(
    arg(argc, argv, "--recovery-messages", quick ? 20'000 : 1'000'000));
  std::chrono::microseconds window{arg(argc, argv, "--window-us", 1000)};
  if (auto q = arg(argc, argv, "--quiet-us", -1); q >= 0)
    quiet_option = std::chrono::microseconds{q};
  auto want = [&](const char* name) { return only.empty() || only == name; };
  std::filesystem::create_directories(root);

  if (want("fsync_each")) {
    std::vector<double> rate, p50, cr, rr, cp, rp, rp99;
    for (std::size_t size : {std::size_t{64}, std::size_t{1024}}) {
      rate.clear();
      p50.clear();
      cr.clear();
      rr.clear();
      cp.clear();
      rp.clear();
      for (int r = 0; r < runs; ++r) {
        figures c, w;
        alternate(
          r, [&] { c = courier_fsync_each(root, messages, size); },
          [&] { w = raw_fsync_each(root, messages, record_size(size)); });
        rate.push_back(c.rate / w.rate);
        p50.push_back(c.p50_us / w.p50_us);
        cr.push_back(c.rate);
        rr.push_back(w.rate);
        cp.push_back(c.p50_us);
        rp.push_back(w.p50_us);
        rp99.push_back(w.p99_us);
      }
      std::cout << json_line{}
                     .add("scenario", "fsync_each")
                     .add("payload", static_cast<double>(size))
                     .add("courier_per_s", median(cr))
                     .add("raw_per_s", median(rr))
                     .add("rate_ratio", median(rate))
                     .add("courier_p50_us", median(cp))
                     .add("raw_p50_us", median(rp))
                     .add("p50_ratio", median(p50))
                     .add("rate_per_run", ratio_list(rate))
                     .str()
                << std::endl;
    }
  }

  if (want("group_commit")) {
    std::vector<double> c, w, q, vs_raw, vs_sqlite;
    for (int r = 0; r < runs; ++r) {
      double cr = 0, wr = 0, sr = 0;
      alternate(
        r,
        [&] {
          cr = courier_group(root, group_messages, 64, 100, group_in_flight);
        },
        [&] {
          wr = raw_group(root, group_messages, record_size(64), 100);
          sr = sqlite_group(root, group_messages / 4, 64, 100);
        });
      c.push_back(cr);
      w.push_back(wr);
      q.push_back(sr);
      vs_raw.push_back(cr / wr);
      vs_sqlite.push_back(cr / sr);
    }
    std::cout << json_line{}
                   .add("scenario", "group_commit")
                   .add("payload", 64)
                   .add("courier_per_s", median(c))
                   .add("raw_batch100_per_s", median(w))
                   .add("sqlite_wal_full_per_s", median(q))
                   .add("vs_raw", median(vs_raw))
                   .add("vs_sqlite", median(vs_sqlite))
                   .add("vs_raw_per_run", ratio_list(vs_raw))
                   .add("vs_sqlite_per_run", ratio_list(vs_sqlite))
                   .str()
              << std::endl;
  }

  if (want("latency")) {
    // Besides the bar's twin, one that idles a window before each commit,
    // as the store's writer does: on some disks an fdatasync after a pause
    // is much slower at the tail (docs/benchmarks.md).
    std::vector<double> ratio, cp99, rp99, rates, pp99, paused_ratio;
    for (int r = 0; r < runs; ++r) {
      figures c, w, paused;
      alternate(
        r, [&] { c = courier_latency(root, messages * 2, 64, window, 4); },
        [&] {
          w = raw_fsync_each(root, messages, record_size(64));
          paused = raw_fsync_each(root, messages / 2, 4 * record_size(64),
                                  window);
        });
      auto bound = static_cast<double>(window.count()) + 2 * w.p99_us;
      ratio.push_back(c.p99_us / bound);
      cp99.push_back(c.p99_us);
      rp99.push_back(w.p99_us);
      rates.push_back(c.rate);
      pp99.push_back(paused.p99_us);
      paused_ratio.push_back(
        c.p99_us / (static_cast<double>(window.count()) + 2 * paused.p99_us));
    }
    std::cout << json_line{}
                   .add("scenario", "latency")
                   .add("window_us", static_cast<double>(window.count()))
                   .add("writers", 4)
                   .add("courier_p99_us", median(cp99))
                   .add("raw_commit_p99_us", median(rp99))
                   .add("p99_over_bound", median(ratio))
                   .add("courier_per_s", median(rates))
                   .add("per_run", ratio_list(ratio))
                   .add("raw_paused_commit_p99_us", median(pp99))
                   .add("p99_over_paused_bound", median(paused_ratio))
                   .str()
              << std::endl;
  }

  if (want("recovery")) {
    scratch dir{root};
    fill(dir.path, recovery_messages, 64);
    std::uint64_t bytes = 0;
    for (auto& e : std::filesystem::directory_iterator(dir.path))
      bytes += e.file_size();
    std::vector<double> ratio, ct, rt;
    for (int r = 0; r < runs; ++r) {
      double c = 0, w = 0;
      alternate(
        r, [&] { c = courier_recovery(dir.path, recovery_messages); },
        [&] { w = raw_read(dir.path); });
      ratio.push_back(w / c);
      ct.push_back(c * 1e3);
      rt.push_back(w * 1e3);
    }
    std::cout << json_line{}
                   .add("scenario", "recovery")
                   .add("messages", recovery_messages)
                   .add("bytes", static_cast<double>(bytes))
                   .add("courier_ms", median(ct))
                   .add("raw_read_ms", median(rt))
                   .add("courier_rate_over_raw", median(ratio))
                   .add("per_run", ratio_list(ratio))
                   .str()
              << std::endl;
  }
  std::error_code ignored;
  std::filesystem::remove(root, ignored);
  return 0;
}
