#include "store/pg.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "tls/boringssl.h"
#include <openssl/base64.h>
#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/md5.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace gatehouse::pg {
namespace {

constexpr int32_t kProtocolVersion = 196'608;  // 3.0
constexpr int32_t kSslRequestCode = 80'877'103;  // 1234 << 16 | 5679
constexpr uint32_t kMessageMaxBytes = 1u << 30;
constexpr uint32_t kReadTimeoutS = 60;  // a database that answers nothing for this long is treated as gone

// Each migration runs once, in its own transaction, recorded with its version.
// Never edit one that shipped: add the next.
struct Migration {
  int version;
  const char* description;
  const char* sql;
};
constexpr std::array kMigrations{
    Migration{1, "events, incarnations, counters",
              R"sql(
CREATE TABLE gatehouse.incarnations (
  agent text NOT NULL,
  incarnation bigint NOT NULL,          -- the agent's u64 id, as a two's-complement bigint
  base_seq bigint NOT NULL,             -- the incarnation begins after this seq
  durable_seq bigint NOT NULL,          -- the highest seq committed (events or a declared gap)
  updated_at timestamptz NOT NULL DEFAULT now(),  -- not indexed: each commit's update stays HOT
  PRIMARY KEY (agent, incarnation)
) WITH (fillfactor = 50);                          -- room on the page for those HOT versions
CREATE TABLE gatehouse.events (
  received_at timestamptz NOT NULL,     -- server time the event was taken
  agent text NOT NULL,
  incarnation bigint NOT NULL,
  seq bigint NOT NULL,
  gap_first_seq bigint,                 -- not NULL: the agent dropped gap_first_seq..seq (no payload)
  path text NOT NULL,                   -- the gateways it crossed, nearest the agent first ('' direct)
  server text NOT NULL,                 -- the management server that stored it
  payload bytea
) PARTITION BY RANGE (received_at);
CREATE INDEX events_agent_seq ON gatehouse.events (agent, incarnation, seq);
CREATE TABLE gatehouse.server_counters (  -- what each server committed: `gatehouse store stats` without a scan
  server text PRIMARY KEY,
  events bigint NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  gaps bigint NOT NULL DEFAULT 0,
  events_lost bigint NOT NULL DEFAULT 0,
  duplicates_dropped bigint NOT NULL DEFAULT 0
);
)sql"},
    Migration{2, "approvals and inventory, told to every server",
              R"sql(
CREATE TABLE gatehouse.gateways (
  name text PRIMARY KEY,                -- lower-case
  approved_unix_s bigint NOT NULL,
  tier text NOT NULL DEFAULT ''         -- '': a tier of its own
);
CREATE TABLE gatehouse.agents (
  name text PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('approved', 'pending', 'rejected')),
  first_seen_unix_s bigint NOT NULL DEFAULT 0,
  last_seen_unix_s bigint NOT NULL DEFAULT 0,
  via text NOT NULL DEFAULT '',         -- the gateway it last came through ('' direct)
  scope text NOT NULL DEFAULT '',       -- its bound tier or '@direct' ('' unbound)
  auth text NOT NULL DEFAULT ''         -- 'cert', 'kerberos' ('' unbound)
);
CREATE FUNCTION gatehouse.approvals_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('gatehouse_approvals', TG_TABLE_NAME);
  RETURN NULL;
END
$$;
CREATE TRIGGER gateways_changed AFTER INSERT OR UPDATE OR DELETE ON gatehouse.gateways
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse.approvals_changed();
CREATE TRIGGER agents_changed AFTER INSERT OR DELETE OR UPDATE OF state, scope, auth ON gatehouse.agents
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse.approvals_changed();
)sql"},
    Migration{3, "one upsert per commit moves an incarnation's durable seq",
              R"sql(
-- The durable seq before the last commit that moved it: that commit's
-- upsert returns it (the events at or below it are duplicates), so the row
-- moves once per commit, not locked and then updated.
ALTER TABLE gatehouse.incarnations ADD COLUMN prev_durable_seq bigint NOT NULL DEFAULT 0;
)sql"},
    Migration{4, "agents' and gateways' heartbeats and health (gatehouse agents)",
              R"sql(
ALTER TABLE gatehouse.agents ADD COLUMN last_heartbeat_unix_s bigint NOT NULL DEFAULT 0,
  ADD COLUMN health text NOT NULL DEFAULT '',   -- 'up', 'down': the verdict of the server that heard it last
  ADD COLUMN path text NOT NULL DEFAULT '';     -- the gateways it came through, nearest it first
ALTER TABLE gatehouse.gateways ADD COLUMN last_heartbeat_unix_s bigint NOT NULL DEFAULT 0,
  ADD COLUMN health text NOT NULL DEFAULT '';
)sql"},
};

void put32(std::string& out, int32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((static_cast<uint32_t>(value) >> shift) & 0xff));
}
void put16(std::string& out, int16_t value) {
  out.push_back(static_cast<char>((static_cast<uint16_t>(value) >> 8) & 0xff));
  out.push_back(static_cast<char>(static_cast<uint16_t>(value) & 0xff));
}
void put_cstring(std::string& out, std::string_view text) {
  out.append(text);
  out.push_back('\0');
}
int32_t get32(const char* in) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(in);
  return static_cast<int32_t>((uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
                              uint32_t{bytes[3]});
}
int16_t get16(const char* in) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(in);
  return static_cast<int16_t>((bytes[0] << 8) | bytes[1]);
}

// ErrorResponse fields: the severity, SQLSTATE and message, one line.
std::string error_fields(const std::string& body) {
  std::string severity, code, message;
  for (size_t at = 0; at < body.size() && body[at] != '\0';) {
    const char field = body[at++];
    const size_t end = body.find('\0', at);
    if (end == std::string::npos) break;
    const std::string value = body.substr(at, end - at);
    if (field == 'S') severity = value;
    if (field == 'C') code = value;
    if (field == 'M') message = value;
    at = end + 1;
  }
  return severity + " " + code + ": " + message;
}

std::string base64(std::string_view bytes) {
  size_t size = 0;
  EVP_EncodedLength(&size, bytes.size());
  std::string out(size, '\0');
  const size_t written = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()),
                                         reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  out.resize(written);
  return out;
}
bool unbase64(std::string_view text, std::string& out) {
  size_t size = 0;
  if (!EVP_DecodedLength(&size, text.size())) return false;
  out.assign(size, '\0');
  if (!EVP_DecodeBase64(reinterpret_cast<uint8_t*>(out.data()), &size, size,
                        reinterpret_cast<const uint8_t*>(text.data()), text.size())) {
    return false;
  }
  out.resize(size);
  return true;
}
std::string hmac_sha256(std::string_view key, std::string_view message) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), key.size(), reinterpret_cast<const uint8_t*>(message.data()), message.size(),
       reinterpret_cast<uint8_t*>(out.data()), &size);
  return out;
}
std::string sha256(std::string_view bytes) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), reinterpret_cast<uint8_t*>(out.data()));
  return out;
}
std::string md5_hex(std::string_view bytes) {
  uint8_t digest[MD5_DIGEST_LENGTH];
  MD5(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t byte : digest) {
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 15]);
  }
  return out;
}
// A SCRAM attribute ("r=...") of a comma-separated message.
std::string scram_attribute(std::string_view message, char name) {
  for (size_t at = 0; at < message.size();) {
    size_t end = message.find(',', at);
    if (end == std::string_view::npos) end = message.size();
    if (end - at >= 2 && message[at] == name && message[at + 1] == '=') {
      return std::string(message.substr(at + 2, end - at - 2));
    }
    at = end + 1;
  }
  return "";
}

std::string os_user() {
  const passwd* entry = getpwuid(getuid());
  return entry != nullptr ? entry->pw_name : "postgres";
}

}  // namespace

bool parse_conninfo(const std::string& dsn, ConnInfo& info, std::string& why) {
  std::string hosts = "/var/run/postgresql";
  std::string ports = "5432";
  for (size_t at = 0; at < dsn.size();) {
    while (at < dsn.size() && dsn[at] == ' ') ++at;
    if (at >= dsn.size()) break;
    const size_t equals = dsn.find('=', at);
    if (equals == std::string::npos) {
      why = "dsn: \"" + dsn.substr(at) + "\" is not key=value";
      return false;
    }
    std::string key = dsn.substr(at, equals - at);
    while (!key.empty() && key.back() == ' ') key.pop_back();
    at = equals + 1;
    while (at < dsn.size() && dsn[at] == ' ') ++at;
    std::string value;
    if (at < dsn.size() && dsn[at] == '\'') {
      for (++at; at < dsn.size() && dsn[at] != '\''; ++at) {
        if (dsn[at] == '\\' && at + 1 < dsn.size()) ++at;
        value.push_back(dsn[at]);
      }
      if (at >= dsn.size()) {
        why = "dsn: an unterminated quote in " + key;
        return false;
      }
      ++at;
    } else {
      while (at < dsn.size() && dsn[at] != ' ') value.push_back(dsn[at++]);
    }
    if (key == "host" || key == "hostaddr") {
      hosts = value;
    } else if (key == "port") {
      ports = value;
    } else if (key == "user") {
      info.user = value;
    } else if (key == "dbname") {
      info.dbname = value;
    } else if (key == "password") {
      info.password = value;
    } else if (key == "application_name") {
      info.application_name = value;
    } else if (key == "connect_timeout") {
      info.connect_timeout_s = static_cast<uint32_t>(std::max(1, std::atoi(value.c_str())));
    } else if (key == "target_session_attrs") {
      if (value != "any" && value != "read-write") {
        why = "dsn: target_session_attrs " + value + " (gatehouse takes any or read-write)";
        return false;
      }
      info.read_write_only = value == "read-write";
    } else if (key == "sslmode") {
      using Mode = ConnInfo::SslMode;
      static constexpr std::pair<std::string_view, Mode> kModes[] = {
          {"disable", Mode::disable}, {"allow", Mode::allow},         {"prefer", Mode::prefer},
          {"require", Mode::require}, {"verify-ca", Mode::verify_ca}, {"verify-full", Mode::verify_full}};
      const auto* found = std::find_if(std::begin(kModes), std::end(kModes),
                                       [&](const auto& mode) { return mode.first == value; });
      if (found == std::end(kModes)) {
        why = "dsn: sslmode " + value + " (want disable, allow, prefer, require, verify-ca or verify-full)";
        return false;
      }
      info.ssl_mode = found->second;
    } else if (key == "sslrootcert") {
      info.ssl_root_cert = value;
    } else if (key == "sslcert") {
      info.ssl_cert = value;
    } else if (key == "sslkey") {
      info.ssl_key = value;
    } else {
      why = "dsn: unknown key " + key;
      return false;
    }
  }
  const bool verifies = info.ssl_mode == ConnInfo::SslMode::verify_ca || info.ssl_mode == ConnInfo::SslMode::verify_full;
  if (verifies && info.ssl_root_cert.empty()) {
    why = "dsn: sslmode verify-ca and verify-full need sslrootcert (the CA file that signed the server's certificate)";
    return false;
  }
  if (info.ssl_cert.empty() != info.ssl_key.empty()) {
    why = "dsn: sslcert and sslkey go together";
    return false;
  }
  std::vector<std::string> port_list;
  for (size_t at = 0; at <= ports.size();) {
    const size_t comma = std::min(ports.find(',', at), ports.size());
    port_list.push_back(ports.substr(at, comma - at));
    at = comma + 1;
  }
  size_t index = 0;
  for (size_t at = 0; at <= hosts.size(); ++index) {
    const size_t comma = std::min(hosts.find(',', at), hosts.size());
    const std::string& port = port_list.size() == 1 ? port_list[0] : (index < port_list.size() ? port_list[index] : "");
    if (port.empty()) {
      why = "dsn: " + std::to_string(port_list.size()) + " ports for more hosts (one, or one per host)";
      return false;
    }
    info.hosts.push_back({hosts.substr(at, comma - at), port});
    at = comma + 1;
  }
  if (info.user.empty()) info.user = os_user();
  if (info.dbname.empty()) info.dbname = info.user;
  return true;
}

std::unique_ptr<Connection> Connection::connect(const std::string& dsn, std::string& why) {
  ConnInfo info;
  if (!parse_conninfo(dsn, info, why)) return nullptr;
  std::string failures;
  for (const ConnInfo::Host& host : info.hosts) {
    std::unique_ptr<Connection> conn(new Connection());
    std::string failed;
    if (conn->open(info, host, failed) && conn->authenticate(info, failed)) {
      if (!info.read_write_only) return conn;
      Result result;
      if (conn->exec("SHOW transaction_read_only", failed, &result) && !result.rows.empty()) {
        if (result.text(0, 0) == "off") return conn;
        failed = "read-only (a standby)";
      }
    }
    failures += (failures.empty() ? "" : "; ") + host.host + ":" + host.port + ": " + failed;
  }
  why = "cannot connect to PostgreSQL: " + failures;
  return nullptr;
}

Connection::~Connection() { fail(); }

void Connection::fail() {
  tls_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool Connection::open(const ConnInfo& info, const ConnInfo::Host& host, std::string& why) {
  host_ = host.host + ":" + host.port;
  const timeval send_timeout{static_cast<time_t>(info.connect_timeout_s), 0};
  const timeval receive_timeout{kReadTimeoutS, 0};
  auto configure = [&](int fd) {
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);  // connect() honours it too
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receive_timeout, sizeof receive_timeout);
  };
  if (host.host.starts_with('/')) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string path = host.host + "/.s.PGSQL." + host.port;
    if (path.size() >= sizeof address.sun_path) {
      why = "socket path too long: " + path;
      return false;
    }
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    configure(fd_);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      why = path + ": " + std::strerror(errno);
      fail();
      return false;
    }
  } else {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int rc = getaddrinfo(host.host.c_str(), host.port.c_str(), &hints, &found); rc != 0) {
      why = gai_strerror(rc);
      return false;
    }
    why = "no address";
    for (addrinfo* address = found; address != nullptr && fd_ < 0; address = address->ai_next) {
      fd_ = ::socket(address->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      configure(fd_);
      if (::connect(fd_, address->ai_addr, address->ai_addrlen) != 0) {
        why = std::strerror(errno);
        fail();
      }
    }
    freeaddrinfo(found);
    if (fd_ < 0) return false;
    const int on = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    setsockopt(fd_, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    if (!start_tls(info, host, why)) return false;
  }
  std::string startup;
  put32(startup, 0);
  put32(startup, kProtocolVersion);
  for (const auto& [key, value] : {std::pair<const char*, const std::string&>{"user", info.user},
                                   {"database", info.dbname}, {"application_name", info.application_name}}) {
    put_cstring(startup, key);
    put_cstring(startup, value);
  }
  startup.push_back('\0');
  const std::string size = [&] {
    std::string bytes;
    put32(bytes, static_cast<int32_t>(startup.size()));
    return bytes;
  }();
  startup.replace(0, 4, size);
  out_ += startup;
  return flush(why);
}

// SSLRequest, then TLS if the server takes it ('S'); 'N' is fine unless
// sslmode requires TLS. Exactly one byte is read before the handshake: bytes
// after it would not be the server's (CVE-2021-23222).
bool Connection::start_tls(const ConnInfo& info, const ConnInfo::Host& host, std::string& why) {
  using Mode = ConnInfo::SslMode;
  if (info.ssl_mode == Mode::disable || info.ssl_mode == Mode::allow) return true;
  std::string request;
  put32(request, 8);
  put32(request, kSslRequestCode);
  out_ = request;
  if (!flush(why)) return false;
  char answer = 0;
  ssize_t n = 0;
  do {
    n = ::recv(fd_, &answer, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || (answer != 'S' && answer != 'N')) {
    why = n == 1 ? "the server answered the TLS request with neither yes nor no"
                 : std::string("the server closed the connection at the TLS request: ") + std::strerror(errno);
    fail();
    return false;
  }
  if (answer == 'N') {
    if (info.ssl_mode == Mode::prefer) return true;
    why = "the server does not do TLS (sslmode " + std::string(info.ssl_mode == Mode::require ? "require" : "verify-*") +
          " needs it)";
    fail();
    return false;
  }
  const TlsOptions options{.verify_chain = info.ssl_mode >= Mode::verify_ca ||
                                           (info.ssl_mode == Mode::require && !info.ssl_root_cert.empty()),
                           .verify_host = info.ssl_mode == Mode::verify_full,
                           .root_cert = info.ssl_root_cert,
                           .cert = info.ssl_cert,
                           .key = info.ssl_key};
  tls_ = TlsChannel::start(fd_, host.host, options, why);
  if (tls_ == nullptr) {
    fail();
    return false;
  }
  return true;
}

bool Connection::authenticate(const ConnInfo& info, std::string& why) {
  for (;;) {
    char type = 0;
    std::string body;
    if (!receive(type, body, why)) return false;
    if (type == 'E') {
      why = error_fields(body);
      fail();
      return false;
    }
    if (type == 'Z') return true;
    if (type != 'R') continue;  // ParameterStatus, BackendKeyData, notices
    if (body.size() < 4) {
      why = "a malformed authentication request";
      fail();
      return false;
    }
    const int32_t code = get32(body.data());
    if (code == 0) continue;
    if ((code == 3 || code == 5 || code == 10) && info.password.empty()) {
      why = "the server asks for a password and the dsn has none";
      fail();
      return false;
    }
    std::string answer;
    if (code == 3) {
      put_cstring(answer, info.password);
    } else if (code == 5 && body.size() >= 8) {
      put_cstring(answer, "md5" + md5_hex(md5_hex(info.password + info.user) + body.substr(4, 4)));
    } else if (code == 10) {
      if (!scram(info, std::string_view(body).substr(4), why)) return false;
      continue;
    } else {
      why = "authentication method " + std::to_string(code) + " is not supported (trust, password, md5, scram-sha-256 are)";
      fail();
      return false;
    }
    if (!send('p', answer, why) || !flush(why)) return false;
  }
}

// SCRAM-SHA-256 (RFC 5802/7677, no channel binding); the server proves it knew the password too.
bool Connection::scram(const ConnInfo& info, std::string_view mechanisms, std::string& why) {
  if (mechanisms.find("SCRAM-SHA-256") == std::string_view::npos) {
    why = "the server offers no SCRAM-SHA-256";
    fail();
    return false;
  }
  uint8_t random[18];
  RAND_bytes(random, sizeof random);
  const std::string client_nonce = base64(std::string_view(reinterpret_cast<const char*>(random), sizeof random));
  const std::string client_first_bare = "n=,r=" + client_nonce;
  std::string initial;
  put_cstring(initial, "SCRAM-SHA-256");
  put32(initial, static_cast<int32_t>(client_first_bare.size() + 3));
  initial += "n,," + client_first_bare;
  if (!send('p', initial, why) || !flush(why)) return false;
  char type = 0;
  std::string body;
  if (!receive(type, body, why)) return false;
  if (type != 'R' || body.size() < 4 || get32(body.data()) != 11) {
    why = type == 'E' ? error_fields(body) : "SCRAM: no server-first message";
    fail();
    return false;
  }
  const std::string server_first = body.substr(4);
  const std::string nonce = scram_attribute(server_first, 'r');
  std::string salt;
  const int iterations = std::atoi(scram_attribute(server_first, 'i').c_str());
  if (!nonce.starts_with(client_nonce) || !unbase64(scram_attribute(server_first, 's'), salt) || iterations < 1) {
    why = "SCRAM: a malformed server-first message";
    fail();
    return false;
  }
  std::string salted(SHA256_DIGEST_LENGTH, '\0');
  PKCS5_PBKDF2_HMAC(info.password.data(), info.password.size(), reinterpret_cast<const uint8_t*>(salt.data()),
                    salt.size(), static_cast<unsigned>(iterations), EVP_sha256(), salted.size(),
                    reinterpret_cast<uint8_t*>(salted.data()));
  const std::string without_proof = "c=biws,r=" + nonce;
  const std::string auth_message = client_first_bare + "," + server_first + "," + without_proof;
  const std::string client_key = hmac_sha256(salted, "Client Key");
  std::string proof = hmac_sha256(sha256(client_key), auth_message);
  for (size_t i = 0; i < proof.size(); ++i) proof[i] = static_cast<char>(proof[i] ^ client_key[i]);
  if (!send('p', without_proof + ",p=" + base64(proof), why) || !flush(why)) return false;
  if (!receive(type, body, why)) return false;
  const std::string expected = base64(hmac_sha256(hmac_sha256(salted, "Server Key"), auth_message));
  if (type != 'R' || body.size() < 4 || get32(body.data()) != 12 || scram_attribute(body.substr(4), 'v') != expected) {
    why = type == 'E' ? error_fields(body) : "SCRAM: the server did not prove it knows the password";
    fail();
    return false;
  }
  OPENSSL_cleanse(salted.data(), salted.size());
  return true;
}

bool Connection::send(char type, std::string_view body, std::string& why) {
  if (fd_ < 0) {
    why = "the connection is gone";
    return false;
  }
  out_.push_back(type);
  put32(out_, static_cast<int32_t>(body.size() + 4));
  out_.append(body);
  return true;
}

bool Connection::flush(std::string& why) {
  size_t sent = 0;
  while (sent < out_.size()) {
    std::string tls_why;
    const ssize_t n = tls_ != nullptr ? tls_->write(out_.data() + sent, out_.size() - sent, tls_why)
                                      : ::send(fd_, out_.data() + sent, out_.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && tls_ == nullptr && errno == EINTR) continue;
    if (n <= 0) {
      why = tls_ != nullptr ? tls_why : std::string("write: ") + std::strerror(errno);
      out_.clear();
      fail();
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  out_.clear();
  return true;
}

bool Connection::message_ready() const {
  if (in_.size() < 5) return false;
  const int32_t size = get32(in_.data() + 1);
  return size < 4 || static_cast<uint32_t>(size) > kMessageMaxBytes || in_.size() >= static_cast<size_t>(size) + 1;
}

bool Connection::read_more(std::string& why) {
  if (fd_ < 0) {
    why = "the connection is gone";
    return false;
  }
  char chunk[65'536];
  for (;;) {
    std::string tls_why;
    const ssize_t n = tls_ != nullptr ? tls_->read(chunk, sizeof chunk, tls_why) : ::recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0 && tls_ == nullptr && errno == EINTR) continue;
    if (n <= 0) {
      why = n == 0 ? "the server closed the connection"
                   : tls_ != nullptr ? tls_why : std::string("read: ") + std::strerror(errno);
      fail();
      return false;
    }
    in_.append(chunk, static_cast<size_t>(n));
    return true;
  }
}

bool Connection::receive(char& type, std::string& body, std::string& why) {
  while (!message_ready()) {
    if (!read_more(why)) return false;
  }
  const int32_t size = get32(in_.data() + 1);
  if (size < 4 || static_cast<uint32_t>(size) > kMessageMaxBytes) {
    why = "a malformed message from the server";
    fail();
    return false;
  }
  type = in_[0];
  body.assign(in_, 5, static_cast<size_t>(size) - 4);
  in_.erase(0, static_cast<size_t>(size) + 1);
  return true;
}

bool Connection::wait_notification(uint32_t timeout_ms, bool& notified, std::string& why) {
  if (!notified_ && !message_ready()) {
    pollfd ready{fd_, POLLIN, 0};
    // Bytes TLS already decrypted are not on the socket any more.
    const int n = tls_ != nullptr && tls_->pending() ? 1 : ::poll(&ready, 1, static_cast<int>(timeout_ms));
    if (n < 0 && errno != EINTR) {
      why = std::string("poll: ") + std::strerror(errno);
      fail();
      return false;
    }
    if (n > 0 && !read_more(why)) return false;
  }
  while (message_ready()) {
    char type = 0;
    std::string body;
    if (!receive(type, body, why)) return false;
    if (type == 'A') notified_ = true;
    if (type == 'E') {  // the server ends the session (an admin's terminate, a shutdown)
      why = error_fields(body);
      fail();
      return false;
    }
  }
  notified = notified_;
  notified_ = false;
  return true;
}

bool Connection::finish(Result* result, std::string& why) {
  if (!out_.empty() && !flush(why)) return false;
  return read_answer(result, why);
}

bool Connection::read_answer(Result* result, std::string& why) {
  std::string error;
  for (;;) {
    char type = 0;
    std::string body;
    if (!receive(type, body, why)) return false;
    switch (type) {
      case 'T':  // a new statement's rows begin
        if (result != nullptr) result->rows.clear();
        break;
      case 'D':
        if (result != nullptr) {
          auto& row = result->rows.emplace_back();
          size_t at = 2;
          for (int16_t column = 0; column < get16(body.data()); ++column) {
            const int32_t size = get32(body.data() + at);
            at += 4;
            if (size < 0) {
              row.emplace_back(std::nullopt);
              continue;
            }
            row.emplace_back(body.substr(at, static_cast<size_t>(size)));
            at += static_cast<size_t>(size);
          }
        }
        break;
      case 'C':
        if (result != nullptr) result->command_tag = body.c_str();
        break;
      case 'E':
        if (error.empty()) error = error_fields(body);
        break;
      case 'G':  // COPY FROM STDIN in a simple query: not asked for, refuse it
        send('f', "unexpected COPY\0", why);
        flush(why);
        break;
      case 'A':  // a NOTIFY while a statement ran: kept for wait_notification
        notified_ = true;
        break;
      case 'Z':
        if (!error.empty()) {
          why = error;
          return false;
        }
        return true;
      default:  // ParseComplete, BindComplete, NoData, notices, parameter changes
        break;
    }
  }
}

bool Connection::queue(const std::string& sql, std::string& why) {
  std::string body;
  put_cstring(body, sql);
  return send('Q', body, why);
}

bool Connection::exec(const std::string& sql, std::string& why, Result* last) {
  return queue(sql, why) && finish(last, why);
}

bool Connection::exec(const std::string& sql, const std::vector<std::string>& parameters, Result& result,
                      std::string& why) {
  result = {};
  return queue(sql, parameters, why) && finish(&result, why);
}

bool Connection::queue(const std::string& sql, const std::vector<std::string>& parameters, std::string& why) {
  std::string parse;
  put_cstring(parse, "");
  put_cstring(parse, sql);
  put16(parse, 0);
  std::string bind;
  put_cstring(bind, "");
  put_cstring(bind, "");
  put16(bind, 0);  // every parameter as text
  put16(bind, static_cast<int16_t>(parameters.size()));
  for (const std::string& parameter : parameters) {
    put32(bind, static_cast<int32_t>(parameter.size()));
    bind += parameter;
  }
  put16(bind, 0);  // every column as text
  std::string describe = "P";
  describe.push_back('\0');
  std::string execute;
  put_cstring(execute, "");
  put32(execute, 0);
  return send('P', parse, why) && send('B', bind, why) && send('D', describe, why) && send('E', execute, why) &&
         send('S', "", why);
}

bool Connection::copy_in(const std::string& sql, std::string_view data, std::string& why) {
  return queue(sql, why) && finish_copy(data, why);
}

bool Connection::finish_copy(std::string_view data, std::string& why) {
  if (!out_.empty() && !flush(why)) return false;
  for (;;) {
    char type = 0;
    std::string answer;
    if (!receive(type, answer, why)) return false;
    if (type == 'G') break;
    if (type == 'E') {
      why = error_fields(answer);
      std::string ignored;
      read_answer(nullptr, ignored);  // its ReadyForQuery
      return false;
    }
  }
  constexpr size_t kChunkBytes = 1u << 20;
  for (size_t at = 0; at < data.size(); at += kChunkBytes) {
    if (!send('d', data.substr(at, kChunkBytes), why) || !flush(why)) return false;
  }
  return send('c', "", why) && flush(why) && read_answer(nullptr, why);
}

std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

std::string int8_array(const std::vector<int64_t>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(items[i]);
  }
  return out + "}";
}

int schema_version_latest() { return kMigrations.back().version; }

bool migrate(Connection& conn, std::vector<int>& applied, std::string& why) {
  // The session lock serialises servers starting together; each migration
  // commits on its own.
  if (!conn.exec("SELECT pg_advisory_lock(hashtext('gatehouse.migrate'))", why)) return false;
  const auto done = [&conn](bool ok) {
    std::string ignored;
    conn.exec("SELECT pg_advisory_unlock(hashtext('gatehouse.migrate'))", ignored);
    return ok;
  };
  Result current;
  if (!conn.exec("CREATE SCHEMA IF NOT EXISTS gatehouse; "
                 "CREATE TABLE IF NOT EXISTS gatehouse.schema_migrations (version integer PRIMARY KEY, "
                 "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()); "
                 "SELECT coalesce(max(version), 0) FROM gatehouse.schema_migrations",
                 why, &current)) {
    return done(false);
  }
  const int version = std::stoi(current.text(0, 0));
  if (version > schema_version_latest()) {
    why = "the database's schema is version " + std::to_string(version) + ", newer than this gatehouse knows (" +
          std::to_string(schema_version_latest()) + "): upgrade this server";
    return done(false);
  }
  for (const Migration& migration : kMigrations) {
    if (migration.version <= version) continue;
    // One simple query: one implicit transaction, all of it or nothing.
    std::string description(migration.description);
    for (size_t at = description.find('\''); at != std::string::npos; at = description.find('\'', at + 2)) {
      description.insert(at, 1, '\'');  // a quote in an SQL literal is doubled
    }
    const std::string sql = std::string(migration.sql) +
                            "INSERT INTO gatehouse.schema_migrations (version, description) VALUES (" +
                            std::to_string(migration.version) + ", '" + description + "');";
    if (!conn.exec(sql, why)) {
      why = "schema migration " + std::to_string(migration.version) + " failed: " + why;
      return done(false);
    }
    applied.push_back(migration.version);
  }
  return done(true);
}

}  // namespace gatehouse::pg
