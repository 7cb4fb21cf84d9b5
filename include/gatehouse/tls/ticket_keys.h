// TLS session-ticket keys from a file that a gateway tier shares, so an agent
// that fails over to a sibling gateway resumes instead of doing a full
// handshake. docs/auth.md describes the file and its rotation.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace gatehouse::tls {

inline constexpr uint32_t kTicketKeysMax = 8;       // lines in a ticket key file
inline constexpr uint32_t kTicketKeyNameBytes = 16;
inline constexpr uint32_t kTicketKeyHexChars = 2 * (16 + 32 + 32);

struct TicketKey {
  std::array<uint8_t, kTicketKeyNameBytes> name{};  // names the key inside each ticket
  std::array<uint8_t, 32> hmac_key{};               // HMAC-SHA256
  std::array<uint8_t, 32> aes_key{};                // AES-256-CBC
};

// One key per line as 160 hex digits, '#' comments and blank lines allowed.
// The first key seals new tickets; every listed key opens them. Returns "" or why.
std::string load_ticket_keys(const std::string& path, std::vector<TicketKey>& keys);

// Creates the file with one fresh key, or puts a fresh key first and keeps the
// `keep` newest (so tickets sealed with the previous keys still open).
// Written 0600 through a rename, so a watching gateway never reads half a file.
std::string rotate_ticket_keys(const std::string& path, uint32_t keep, std::string& summary);

}  // namespace gatehouse::tls
