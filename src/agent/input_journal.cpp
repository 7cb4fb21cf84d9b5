#include "gatehouse/agent/input_journal.h"

#include <systemd/sd-journal.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "gatehouse/store/segment_log.h"

namespace gatehouse::agent {
namespace {

void append_value(std::string& out, std::string_view value) {
  if (log::valid_utf8(value)) {
    log::append_json_string(out, value);
    return;
  }
  out.push_back('[');
  for (size_t i = 0; i < value.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += std::to_string(static_cast<unsigned>(static_cast<unsigned char>(value[i])));
  }
  out.push_back(']');
}

std::string journal_error(std::string_view what, int result) {
  return std::string(what) + ": " + std::strerror(-result);
}

}  // namespace

std::string journal_entry_json(const std::vector<std::pair<std::string, std::string>>& fields, std::string_view cursor,
                               uint64_t realtime_us, uint64_t monotonic_us) {
  std::string line = "{\"__CURSOR\":";
  log::append_json_string(line, cursor);
  line += ",\"__REALTIME_TIMESTAMP\":\"" + std::to_string(realtime_us) + "\",\"__MONOTONIC_TIMESTAMP\":\"" +
          std::to_string(monotonic_us) + "\"";
  std::vector<bool> written(fields.size(), false);
  for (size_t i = 0; i < fields.size(); ++i) {
    if (written[i]) continue;
    const std::string& name = fields[i].first;
    size_t count = 0;
    for (size_t k = i; k < fields.size(); ++k) count += fields[k].first == name ? 1 : 0;
    line.push_back(',');
    log::append_json_string(line, name);
    line.push_back(':');
    if (count > 1) line.push_back('[');
    for (size_t k = i, n = 0; k < fields.size(); ++k) {
      if (fields[k].first != name) continue;
      if (n++ > 0) line.push_back(',');
      append_value(line, fields[k].second);
      written[k] = true;
    }
    if (count > 1) line.push_back(']');
  }
  line.push_back('}');
  return line;
}

std::unique_ptr<InputJournal> InputJournal::open(const std::string& directory, const std::string& queue_dir,
                                                 uint64_t queue_last_seq, std::string& why) {
  sd_journal* journal = nullptr;
  const int opened = directory.empty() ? sd_journal_open(&journal, SD_JOURNAL_LOCAL_ONLY)
                                       : sd_journal_open_directory(&journal, directory.c_str(), 0);
  if (opened < 0) {
    why = journal_error("cannot open the journal" + (directory.empty() ? std::string() : " in " + directory), opened);
    return nullptr;
  }
  std::unique_ptr<InputJournal> input(new InputJournal(journal, queue_dir + "/journal-cursor"));
  // Whole fields: the default threshold (64 KiB) would cut long ones silently.
  if (const int r = sd_journal_set_data_threshold(journal, 0); r < 0) {
    why = journal_error("cannot read whole journal fields", r);
    return nullptr;
  }
  // An empty journal reads like a quiet one: say why it may be empty.
  if (uint64_t files_bytes = 0; sd_journal_get_usage(journal, &files_bytes) < 0 || files_bytes == 0) {
    log::emit(log::Level::warning, log::EventId::input_position,
              "no journal files are readable " + (directory.empty() ? std::string("on this machine") : "in " + directory) +
                  " (journald not running, or no permission: root or the systemd-journal group); with --follow, files "
                  "are taken as they appear");
  }
  if (!input->resume(queue_last_seq, why)) return nullptr;
  return input;
}

InputJournal::~InputJournal() { sd_journal_close(journal_); }

// Saved: "last_seq cursor". The entry at the cursor is in the queue; those
// after it that the queue holds past last_seq are skipped.
bool InputJournal::resume(uint64_t queue_last_seq, std::string& why) {
  uint64_t saved_seq = 0;
  std::string cursor;
  std::ifstream saved(cursor_path_);
  const bool resumable = saved >> saved_seq >> cursor && saved_seq <= queue_last_seq;
  if (!resumable) {
    if (!cursor.empty()) {
      log::emit(log::Level::warning, log::EventId::input_position,
                "the saved journal cursor is past what the queue holds (the queue folder was restored?): the journal "
                "is read from its first entry");
    }
    const int r = sd_journal_seek_head(journal_);
    if (r < 0) why = journal_error("cannot seek to the journal's head", r);
    return r >= 0;
  }
  if (const int r = sd_journal_seek_cursor(journal_, cursor.c_str()); r < 0) {
    why = journal_error("cannot seek to the saved journal cursor", r);
    return false;
  }
  cursor_ = cursor;
  entries_to_skip_ = queue_last_seq - saved_seq;
  const int moved = sd_journal_next(journal_);
  if (moved > 0 && sd_journal_test_cursor(journal_, cursor.c_str()) > 0) {
    log::emit(log::Level::info, log::EventId::input_position, "the journal resumes after the saved cursor",
              {{"entries_already_queued", entries_to_skip_}});
    return true;
  }
  // Vacuumed or rotated away: the nearest entry after it comes next.
  current_unread_ = moved > 0;
  log::emit(log::Level::warning, log::EventId::input_position,
            "the journal entry at the saved cursor is gone (vacuumed or its file removed): reading on from the nearest "
            "entry after it; entries removed before they were read cannot be sent",
            {{"cursor", cursor}});
  return true;
}

bool InputJournal::entry_line(std::string& line, std::string& why) {
  char* cursor = nullptr;
  uint64_t realtime_us = 0;
  uint64_t monotonic_us = 0;
  sd_id128_t boot{};
  int r = sd_journal_get_cursor(journal_, &cursor);
  if (r < 0) {
    why = journal_error("cannot read a journal entry's cursor", r);
    return false;
  }
  cursor_ = cursor;
  free(cursor);
  if ((r = sd_journal_get_realtime_usec(journal_, &realtime_us)) < 0 ||
      (r = sd_journal_get_monotonic_usec(journal_, &monotonic_us, &boot)) < 0) {
    why = journal_error("cannot read a journal entry's timestamps", r);
    return false;
  }
  std::vector<std::pair<std::string, std::string>> fields;
  const void* data = nullptr;
  size_t size = 0;
  sd_journal_restart_data(journal_);
  while ((r = sd_journal_enumerate_data(journal_, &data, &size)) > 0) {
    const std::string_view field(static_cast<const char*>(data), size);
    const size_t equals = field.find('=');
    if (equals == std::string_view::npos) continue;  // not a field: journald never writes one
    fields.emplace_back(field.substr(0, equals), field.substr(equals + 1));
  }
  if (r < 0) {
    why = journal_error("cannot read the fields of journal entry " + cursor_, r);
    return false;
  }
  line = journal_entry_json(fields, cursor_, realtime_us, monotonic_us);
  return true;
}

bool InputJournal::next(size_t max_lines, size_t line_max_bytes, Batch& batch, std::string& why) {
  GH_INVARIANT(max_lines > 0);
  batch = {};
  while (batch.lines.size() < max_lines) {
    if (current_unread_) {
      current_unread_ = false;
    } else {
      const int moved = sd_journal_next(journal_);
      if (moved < 0) {
        why = journal_error("cannot read the journal", moved);
        return false;
      }
      if (moved == 0) {
        if (entries_to_skip_ > 0) {
          // The queue took entries the journal no longer holds after the
          // cursor (a file removed meanwhile): skipping on would skip new
          // entries, which are not queued. Read them all (nothing lost).
          log::emit(log::Level::warning, log::EventId::input_position,
                    "the journal ends before the entries the queue already took after the saved cursor (a journal "
                    "file was removed?): the entries from here on are all read",
                    {{"entries_not_found", entries_to_skip_}});
          entries_to_skip_ = 0;
        }
        batch.at_end = true;
        return true;
      }
    }
    std::string line;
    if (!entry_line(line, why)) return false;
    saved_ = false;
    if (line.size() > line_max_bytes) {
      batch.refused_bytes.push_back(line.size());
    } else if (entries_to_skip_ > 0) {
      --entries_to_skip_;  // queued by a run that stopped before it saved its cursor
    } else {
      batch.lines.push_back(std::move(line));
    }
  }
  return true;
}

bool InputJournal::save(uint64_t last_seq, std::string& why) {
  if (saved_) return true;
  if (!store::replace_file(cursor_path_, std::to_string(last_seq) + " " + cursor_ + "\n", why)) return false;
  saved_ = true;
  return true;
}

void InputJournal::wait(uint64_t timeout_ms) { sd_journal_wait(journal_, timeout_ms * 1'000); }

}  // namespace gatehouse::agent
