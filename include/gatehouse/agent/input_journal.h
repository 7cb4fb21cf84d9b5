// `--journal` and `--journal-dir DIR`: the systemd journal as the agent's
// input (libsystemd's sd_journal), one event per entry: a JSON object of its
// fields as `journalctl -o json` writes them. Exactly once across restarts,
// by the scheme of `--file` (input_file.h): after each batch is in the queue,
// the cursor of the last entry read and the queue's last seq then are written
// durably to `journal-cursor` in the queue folder; a restart seeks there and
// skips the entries after it that the queue already holds (a crash between
// the queue's write and the cursor's). A fresh queue reads from the journal's
// first entry. docs/agent.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct sd_journal;

namespace gatehouse::agent {

// One entry's fields (name, value; a name may repeat) and its cursor and
// timestamps, as one JSON line; values that are not UTF-8 become arrays of
// byte values, repeated names arrays of values (journalctl's conventions).
std::string journal_entry_json(const std::vector<std::pair<std::string, std::string>>& fields, std::string_view cursor,
                               uint64_t realtime_us, uint64_t monotonic_us);

class InputJournal {
 public:
  // `directory` empty: this machine's system journal. `queue_last_seq`: the
  // queue's now. nullptr with `why`.
  static std::unique_ptr<InputJournal> open(const std::string& directory, const std::string& queue_dir,
                                            uint64_t queue_last_seq, std::string& why);
  ~InputJournal();
  InputJournal(const InputJournal&) = delete;
  InputJournal& operator=(const InputJournal&) = delete;

  struct Batch {
    std::vector<std::string> lines;       // events for the queue, in journal order
    std::vector<uint64_t> refused_bytes;  // entries longer than `line_max_bytes`: not queued
    bool at_end = false;                  // no entry after these (yet)
  };
  // Up to `max_lines` next entries. False with `why` when the journal cannot be read.
  bool next(size_t max_lines, size_t line_max_bytes, Batch& batch, std::string& why);
  // Everything `next` returned is in the queue, which holds through `last_seq`.
  bool save(uint64_t last_seq, std::string& why);
  // At the end: waits up to `timeout_ms` for new entries (or rotated files).
  void wait(uint64_t timeout_ms);

 private:
  InputJournal(sd_journal* journal, std::string cursor_path) : journal_(journal), cursor_path_(std::move(cursor_path)) {}
  bool resume(uint64_t queue_last_seq, std::string& why);
  bool entry_line(std::string& line, std::string& why);

  sd_journal* const journal_;
  const std::string cursor_path_;
  std::string cursor_;            // of the last entry `next` took (queued, refused or skipped)
  bool saved_ = true;             // `cursor_` is what the file says
  bool current_unread_ = false;   // the journal stands on an entry `next` has not taken yet
  uint64_t entries_to_skip_ = 0;  // after the saved cursor, already in the queue
};

}  // namespace gatehouse::agent
