#include "gatehouse/tls/ticket_keys.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "tls/boringssl.h"
#include <openssl/rand.h>

namespace gatehouse::tls {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool parse_key(const std::string& line, TicketKey& key) {
  if (line.size() != kTicketKeyHexChars) return false;
  uint8_t bytes[kTicketKeyHexChars / 2];
  for (size_t i = 0; i < sizeof bytes; ++i) {
    const int high = hex_value(line[2 * i]);
    const int low = hex_value(line[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    bytes[i] = static_cast<uint8_t>(high << 4 | low);
  }
  std::memcpy(key.name.data(), bytes, key.name.size());
  std::memcpy(key.hmac_key.data(), bytes + key.name.size(), key.hmac_key.size());
  std::memcpy(key.aes_key.data(), bytes + key.name.size() + key.hmac_key.size(), key.aes_key.size());
  return true;
}

void append_hex(std::string& line, const uint8_t* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (size_t i = 0; i < size; ++i) {
    line += kDigits[bytes[i] >> 4];
    line += kDigits[bytes[i] & 15];
  }
}

std::string key_line(const TicketKey& key) {
  std::string line;
  append_hex(line, key.name.data(), key.name.size());
  append_hex(line, key.hmac_key.data(), key.hmac_key.size());
  append_hex(line, key.aes_key.data(), key.aes_key.size());
  return line;
}

}  // namespace

std::string load_ticket_keys(const std::string& path, std::vector<TicketKey>& keys) {
  std::ifstream in(path);
  if (!in) return "cannot read ticket key file " + path + ": " + std::strerror(errno);
  keys.clear();
  std::string line;
  for (uint32_t number = 1; std::getline(in, line); ++number) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    TicketKey key;
    if (!parse_key(line, key)) {
      return path + ":" + std::to_string(number) + ": a ticket key is " + std::to_string(kTicketKeyHexChars) +
             " hex digits (make one with `gatehouse certs ticket-keys --file " + path + "`)";
    }
    if (keys.size() == kTicketKeysMax) return path + ": more than " + std::to_string(kTicketKeysMax) + " keys";
    keys.push_back(key);
  }
  if (keys.empty()) return path + " holds no ticket key";
  return "";
}

std::string rotate_ticket_keys(const std::string& path, uint32_t keep, std::string& summary) {
  std::vector<TicketKey> keys;
  if (access(path.c_str(), F_OK) == 0) {
    if (std::string why = load_ticket_keys(path, keys); !why.empty()) return why;
  }
  TicketKey fresh;
  RAND_bytes(fresh.name.data(), fresh.name.size());
  RAND_bytes(fresh.hmac_key.data(), fresh.hmac_key.size());
  RAND_bytes(fresh.aes_key.data(), fresh.aes_key.size());
  keys.insert(keys.begin(), fresh);
  if (keys.size() > keep) keys.resize(keep);

  std::string text = "# gatehouse TLS ticket keys: the first seals new tickets, all open them\n";
  for (const TicketKey& key : keys) text += key_line(key) + "\n";
  const std::string temporary = path + ".new";
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return "cannot write " + temporary + ": " + std::strerror(errno);
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  close(fd);
  if (!written || rename(temporary.c_str(), path.c_str()) != 0) {
    unlink(temporary.c_str());
    return "cannot write " + path + ": " + std::strerror(errno);
  }
  summary = "wrote " + path + " (" + std::to_string(keys.size()) + " key" + (keys.size() == 1 ? "" : "s") +
            "; the new one seals tickets from the next reload)";
  return "";
}

}  // namespace gatehouse::tls
