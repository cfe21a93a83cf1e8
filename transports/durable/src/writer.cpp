// The writer thread: takes what was submitted, writes it as one batch at
// the end of the active segment, fdatasyncs once, then applies the batch
// to the state and runs the callbacks. Also rotation (a new segment past
// segment_bytes) and the maintenance thread (expiry, clock records,
// compaction).

#include <cstdio>

#include "courier/durable/crash_point.hpp"
#include "store_impl.hpp"

namespace courier::durable {

std::string store::impl::segment_path(std::uint64_t number) const {
  char name[32];
  std::snprintf(name, sizeof(name), "seg-%016llx.log",
                static_cast<unsigned long long>(number));
  return opt_.directory + "/" + name;
}

void store::impl::start_threads() {
  writer_ = std::thread{[this] { writer_loop(); }};
  maintenance_ = std::thread{[this] { maintenance_loop(); }};
}

namespace {

/// Set while a thread runs a *_and_wait call that will try to commit its
/// own batch (store::impl::try_lead): its submissions wake nobody.
thread_local bool leading = false;

} // namespace

store::impl::leading_scope::leading_scope() {
  leading = true;
}

store::impl::leading_scope::~leading_scope() {
  leading = false;
}

void store::impl::submit_locked(entry e) {
  auto body = std::move(e.body);
  // Dead and replay records are read again when applied.
  if (e.type == format::record_type::dead
      || e.type == format::record_type::replay)
    e.body = body;
  submit_locked(std::move(e), body);
}

void store::impl::submit_locked(entry e, std::string_view body) {
  bool wake;
  {
    std::lock_guard guard{queue_mu_};
    bool was_empty = queue_.empty();
    if (was_empty || quiet_close_) {
      auto now = std::chrono::steady_clock::now();
      if (was_empty)
        first_queued_ = now;
      last_queued_ = now;
    }
    if (e.has_record) {
      // Framed at once into the bytes of the next batches; the commit
      // fills in the header (sequence, position, CRC).
      auto at = queued_records_.size();
      queued_records_.resize(at + format::record_header_size);
      queued_records_.append(body);
      e.record_bytes = format::record_header_size + body.size();
    }
    queued_bytes_ += e.record_bytes;
    queue_.push_back(std::move(e));
    // The writer thread waits for the first entry, then (with a window)
    // for a full batch; waking it for anything else only costs a context
    // switch per append.
    wake = was_empty || batch_full_locked();
  }
  if (wake && !leading)
    queue_cv_.notify_one();
}

bool store::impl::batch_full_locked() const {
  return (opt_.max_batch_messages != 0
          && queue_.size() >= opt_.max_batch_messages)
         || queued_bytes_ >= opt_.max_batch_bytes;
}

expected<void> store::impl::start_segment(std::uint64_t number,
                                          std::uint64_t first_sequence) {
  auto path = segment_path(number);
  auto f = fs_->open(path, true);
  if (!f)
    return f.error();
  format::segment_header h;
  h.number = number;
  h.first_sequence = first_sequence;
  h.covers_from = number;
  {
    std::lock_guard guard{mu_};
    h.next_message_id = next_id_;
  }
  auto header = format::encode_segment_header(h);
  auto undo = [&](error why) -> expected<void> {
    (void)fs_->remove(path);
    return why;
  };
  if (auto ok = (*f)->truncate(0); !ok)
    return undo(ok.error());
  if (auto ok = (*f)->write_at(0, header.data(), header.size()); !ok)
    return undo(ok.error());
  if (auto ok = (*f)->sync(); !ok)
    return ok.error(); // a failed fsync stops the store: keep the evidence
  crash_point("mid_rotation");
  if (auto ok = fs_->sync_dir(opt_.directory); !ok)
    return ok.error();
  active_file_ = std::move(*f);
  active_size_ = header.size();
  std::lock_guard guard{mu_};
  active_number_ = number;
  segments_[number] = segment_info{active_size_, 0, false, active_file_};
  return {};
}

void store::impl::stop_store(error why, std::vector<entry>& batch) {
  std::vector<entry> rest;
  {
    std::lock_guard guard{mu_};
    if (!stopped_)
      stopped_ = error{errc::data_loss, why.message()};
    std::lock_guard qguard{queue_mu_};
    for (auto& e : queue_)
      rest.push_back(std::move(e));
    queue_.clear();
    queued_records_.clear();
    queued_bytes_ = 0;
  }
  error pending{errc::data_loss,
                "the durable store stopped: " + why.message()
                  + "; this message may or may not be on disk"};
  for (auto* list : {&batch, &rest})
    for (auto& e : *list) {
      if (e.on_append)
        e.on_append(pending);
      if (e.on_done)
        e.on_done(pending);
    }
  batch.clear();
}

void store::impl::take_batch_locked(std::vector<entry>& batch,
                                    std::string& records) {
  std::size_t bytes = 0;
  std::size_t n = 0;
  while (n < queue_.size()
         && (n == 0
             || (bytes < opt_.max_batch_bytes
                 && (opt_.max_batch_messages == 0
                     || n < opt_.max_batch_messages)))) {
    bytes += queue_[n].record_bytes;
    ++n;
  }
  queued_bytes_ -= bytes;
  records.clear();
  if (n == queue_.size()) {
    // All of it (the usual case): the buffers change hands.
    batch.swap(queue_);
    records.swap(queued_records_);
    return;
  }
  batch.insert(
    batch.end(), std::make_move_iterator(queue_.begin()),
    std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(n)));
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
  records.assign(queued_records_, 0, bytes);
  queued_records_.erase(0, bytes);
}

void store::impl::writer_loop() {
  std::vector<entry> batch;
  std::string buffer;
  for (;;) {
    {
      std::unique_lock guard{queue_mu_};
      queue_cv_.wait(guard, [&] { return !queue_.empty() || writer_stop_; });
      if (queue_.empty())
        return; // stopping, and everything is written
      if (opt_.group_commit_window.count() > 0)
        wait_for_batch_locked(guard);
    }
    std::lock_guard token{commit_mu_};
    {
      std::lock_guard guard{queue_mu_};
      take_batch_locked(batch, buffer);
    }
    if (!batch.empty())
      commit(batch, buffer);
  }
}

void store::impl::wait_for_batch_locked(std::unique_lock<std::mutex>& guard) {
  // The window runs from the batch's first entry, not from when this
  // thread got to it: an append waits one window at most. It closes
  // earlier when full, or once appends stop joining it for the quiet
  // time. Appends do not wake this thread (a context switch each): it
  // wakes at the quiet deadline and looks whether a later append moved it.
  auto until = first_queued_ + opt_.group_commit_window;
  for (;;) {
    if (writer_stop_ || batch_full_locked())
      return;
    auto now = std::chrono::steady_clock::now();
    auto wake = until;
    if (quiet_close_)
      wake = std::min(wake, last_queued_ + opt_.group_commit_quiet);
    if (wake <= now)
      return;
    queue_cv_.wait_until(guard, wake);
  }
}

bool store::impl::try_lead() {
  if (opt_.group_commit_window.count() > 0 || !commit_mu_.try_lock()) {
    // The writer thread (or the leader holding the token, which hands
    // what is left to the writer thread when it is done) takes it.
    return false;
  }
  {
    std::lock_guard guard{queue_mu_};
    take_batch_locked(lead_batch_, lead_records_);
  }
  if (!lead_batch_.empty())
    commit(lead_batch_, lead_records_);
  commit_mu_.unlock();
  bool more;
  {
    std::lock_guard guard{queue_mu_};
    more = !queue_.empty();
  }
  if (more)
    queue_cv_.notify_one();
  return true;
}

void store::impl::commit(std::vector<entry>& batch, std::string& buffer) {
  {
    std::lock_guard guard{mu_};
    if (stopped_) {
      stop_store(*stopped_, batch);
      return;
    }
  }
  std::uint32_t pos = 0;
  auto first_sequence = next_sequence_;
  std::size_t at = 0;
  for (auto& e : batch) {
    if (!e.has_record)
      continue;
    format::seal_record(buffer.data() + at, e.record_bytes, next_sequence_++,
                        pos++, e.type);
    e.offset = at; // made absolute once the segment is known
    at += e.record_bytes;
  }
  std::optional<error> full;
  if (!buffer.empty()) {
    if (active_size_ + buffer.size() > opt_.segment_bytes
        && active_size_ > format::segment_header_size) {
      std::uint64_t number;
      {
        std::lock_guard guard{mu_};
        number = active_number_ + 1;
      }
      if (auto ok = start_segment(number, first_sequence); !ok) {
        if (ok.error().code() == errc::resource_exhausted) {
          full = ok.error();
        } else {
          stop_store(ok.error(), batch);
          return;
        }
      } else {
        std::lock_guard guard{mu_};
        if (opt_.compact_automatically) {
          std::uint64_t sealed = 0;
          std::uint64_t live = 0;
          for (auto& [n, s] : segments_)
            if (n != active_number_) {
              sealed += s.bytes;
              live += s.live_bytes;
            }
          if (sealed - live >= opt_.compaction_garbage_bytes
              && (sealed - live) * 2 > sealed) {
            compaction_wanted_ = true;
            maintenance_cv_.notify_all();
          }
        }
      }
    }
    if (!full) {
      auto ok
        = active_file_->write_at(active_size_, buffer.data(), buffer.size());
      if (!ok) {
        // Nothing of a failed batch may stay: cut it off again.
        if (auto cut = active_file_->truncate(active_size_); !cut) {
          stop_store(cut.error(), batch);
          return;
        }
        if (ok.error().code() != errc::resource_exhausted) {
          stop_store(ok.error(), batch);
          return;
        }
        full = ok.error();
      }
    }
    if (full) {
      next_sequence_ = first_sequence;
      {
        std::lock_guard guard{mu_};
        disk_full_ = true;
        last_space_probe_ns_ = 0;
        for (auto& e : batch)
          if (e.has_record)
            roll_back_locked(e);
      }
      error why{errc::resource_exhausted,
                "the durable store's disk is full: " + full->message()};
      for (auto& e : batch) {
        if (e.on_append)
          e.on_append(e.has_record ? expected<append_result>{why}
                                   : append_result{0, e.duplicate});
        if (e.on_done)
          e.on_done(e.has_record ? expected<void>{why} : expected<void>{});
      }
      batch.clear();
      return;
    }
    for (auto& e : batch)
      e.offset += active_size_;
    crash_point("after_append_before_fsync");
    if (auto ok = active_file_->sync(); !ok) {
      stop_store(error{errc::data_loss, "fdatasync failed ("
                                          + ok.error().message()
                                          + "); the store stopped"},
                 batch);
      return;
    }
    active_size_ += buffer.size();
  }
  crash_point("after_fsync_before_ack");
  {
    std::lock_guard guard{mu_};
    segments_[active_number_].bytes = active_size_;
    if (!buffer.empty())
      remember_recent_locked(active_number_, active_size_ - buffer.size(),
                             buffer);
    for (auto& e : batch) {
      e.segment = active_number_;
      apply_locked(e);
    }
  }
  for (auto& e : batch) {
    if (e.on_append)
      e.on_append(append_result{e.duplicate ? 0 : e.id, e.duplicate});
    if (e.on_done)
      e.on_done({});
  }
  batch.clear();
}

void store::impl::maintenance_loop() {
  std::unique_lock guard{mu_};
  while (!maintenance_stop_) {
    maintenance_cv_.wait_for(guard, opt_.expiry_interval);
    if (maintenance_stop_)
      break;
    bool compact_now = compaction_wanted_;
    compaction_wanted_ = false;
    bool timed = !deadlines_.empty();
    guard.unlock();
    expire_due();
    if (compact_now)
      (void)compact();
    auto now = clock_->now();
    guard.lock();
    // While messages wait on timers, a clock record every 5 s bounds how
    // much of a reboot's downtime is measured on the wall clock only.
    if (timed && !stopped_ && !closed_
        && now.boottime_ns - last_clock_record_ns_ > 5'000'000'000) {
      last_clock_record_ns_ = now.boottime_ns;
      entry e;
      e.has_record = true;
      e.type = format::record_type::clock;
      format::writer w{e.body};
      format::encode_clock(w, now);
      submit_locked(std::move(e));
    }
  }
}

void store::impl::close() {
  {
    std::lock_guard guard{mu_};
    if (closed_ && !writer_.joinable())
      return;
    if (!closed_ && !stopped_) {
      // The last sign of life of this boot (docs/disk-format.md, "Time").
      entry e;
      e.has_record = true;
      e.type = format::record_type::clock;
      format::writer w{e.body};
      format::encode_clock(w, clock_->now());
      submit_locked(std::move(e));
    }
    closed_ = true;
    maintenance_stop_ = true;
  }
  maintenance_cv_.notify_all();
  if (maintenance_.joinable())
    maintenance_.join();
  {
    std::lock_guard guard{queue_mu_};
    writer_stop_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable())
    writer_.join();
}

} // namespace courier::durable
