// A PostgreSQL client for the group's store, speaking the frontend/backend
// protocol v3 itself: libpq maps OpenSSL 3 into the process, and gatehouse
// runs BoringSSL only (its library guard refuses both at once). Blocking,
// for the store's writer thread and the CLI, never a shard. What it speaks:
// a libpq-style dsn (host lists, unix sockets, target_session_attrs), trust,
// password, md5 and SCRAM-SHA-256 authentication, TLS (sslmode, pg_tls.h),
// simple queries, one statement with text parameters, COPY FROM STDIN,
// LISTEN/NOTIFY.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/pg_tls.h"

namespace gatehouse::pg {

// A dsn: space-separated key=value pairs, values optionally 'quoted'.
struct ConnInfo {
  struct Host {
    std::string host;  // a name, an address, or a unix socket's folder (starts with '/')
    std::string port;
  };
  std::vector<Host> hosts;
  std::string user;
  std::string dbname;
  std::string password;
  std::string application_name = "gatehouse";
  bool read_write_only = false;  // target_session_attrs=read-write: skip a standby
  uint32_t connect_timeout_s = 10;
  // libpq's sslmode (over TCP; a unix socket never uses TLS): disable and
  // allow: without TLS; prefer (the default): TLS if the server does it;
  // require: TLS or no connection (the chain is checked when sslrootcert is
  // given); verify-ca: the chain against sslrootcert; verify-full: and the host name.
  enum class SslMode { disable, allow, prefer, require, verify_ca, verify_full };
  SslMode ssl_mode = SslMode::prefer;
  std::string ssl_root_cert;
  std::string ssl_cert;
  std::string ssl_key;
};
bool parse_conninfo(const std::string& dsn, ConnInfo& info, std::string& why);

// The rows of one statement, as text (NULL: nullopt).
struct Result {
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::string command_tag;
  const std::string& text(size_t row, size_t column) const { return *rows.at(row).at(column); }
  uint64_t u64(size_t row, size_t column) const { return static_cast<uint64_t>(std::stoll(text(row, column))); }
};

class Connection {
 public:
  // The first host of the dsn that takes us (and, with read-write, is not a
  // standby). nullptr with `why` naming each host's failure.
  static std::unique_ptr<Connection> connect(const std::string& dsn, std::string& why);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Statements without parameters, several at once (the simple protocol);
  // `last`, if given, gets the last statement's rows.
  bool exec(const std::string& sql, std::string& why, Result* last = nullptr);
  // One statement with text parameters ($1...).
  bool exec(const std::string& sql, const std::vector<std::string>& parameters, Result& result, std::string& why);
  // Pipelining: statements queued (simple, or one with parameters) go in one
  // write; each one's answer is then read in order with finish(). Fewer
  // round trips per transaction.
  bool queue(const std::string& sql, std::string& why);
  bool queue(const std::string& sql, const std::vector<std::string>& parameters, std::string& why);
  // The next queued statement's answer (writes what is queued first).
  bool finish(Result* result, std::string& why);
  // COPY ... FROM STDIN with `data` in the statement's format. Or queued
  // (queue() the COPY statement) behind other statements, its data sent
  // once their answers are read: finish_copy(data) completes it.
  bool copy_in(const std::string& sql, std::string_view data, std::string& why);
  bool finish_copy(std::string_view data, std::string& why);
  // After LISTEN: waits up to `timeout_ms` for a NOTIFY (true: one came, or
  // came during an earlier statement). False with `why` when the connection failed.
  bool wait_notification(uint32_t timeout_ms, bool& notified, std::string& why);
  // False once the connection failed (its socket is gone): make a new one.
  bool usable() const { return fd_ >= 0; }
  const std::string& host() const { return host_; }

 private:
  Connection() = default;
  bool open(const ConnInfo& info, const ConnInfo::Host& host, std::string& why);
  bool authenticate(const ConnInfo& info, std::string& why);
  bool scram(const ConnInfo& info, std::string_view mechanisms, std::string& why);
  bool send(char type, std::string_view body, std::string& why);
  bool flush(std::string& why);
  bool receive(char& type, std::string& body, std::string& why);
  // Until ReadyForQuery: rows, the command tag, and the first error.
  bool read_answer(Result* result, std::string& why);
  void fail();

  bool read_more(std::string& why);
  bool message_ready() const;

  bool start_tls(const ConnInfo& info, const ConnInfo::Host& host, std::string& why);

  int fd_ = -1;
  std::unique_ptr<TlsChannel> tls_;  // after SSLRequest was taken: everything goes through it
  bool notified_ = false;  // a NotificationResponse arrived, not yet taken  // a NotificationResponse arrived, not yet taken
  std::string host_;
  std::string out_;  // messages not yet written
  std::string in_;   // bytes read, not yet parsed
};

// A text[] or int8[] literal for a parameter ('{"a","b"}'), quoted safely.
std::string text_array(const std::vector<std::string>& items);
std::string int8_array(const std::vector<int64_t>& items);

// Creates or upgrades the group's schema to the newest version, under an
// advisory lock (servers starting together take turns). `applied`: the
// versions this call applied. False with `why`.
bool migrate(Connection& conn, std::vector<int>& applied, std::string& why);
int schema_version_latest();

}  // namespace gatehouse::pg
