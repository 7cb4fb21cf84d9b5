#include "gatehouse/net/proxy_protocol.h"

#include <arpa/inet.h>

#include <cstring>

namespace gatehouse::net {
namespace {

constexpr uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr uint8_t kFixedBytes = 16;
constexpr uint8_t kCommandLocal = 0x20;
constexpr uint8_t kCommandProxy = 0x21;
constexpr uint8_t kFamilyTcp4 = 0x11;
constexpr uint8_t kFamilyTcp6 = 0x21;
constexpr uint8_t kTlvSsl = 0x20;
constexpr uint8_t kSubTlvSslCn = 0x22;
constexpr uint8_t kClientCertVerified = 0x02 | 0x04;  // PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t be32(const uint8_t* p) { return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3]; }

// The CN sub-TLV of a PP2_TYPE_SSL TLV whose client certificate the relay verified.
std::string verified_cn(const uint8_t* value, uint16_t size) {
  if (size < 5) return "";
  const uint8_t client = value[0];
  const uint32_t verify = be32(value + 1);
  if ((client & kClientCertVerified) == 0 || verify != 0) return "";
  for (uint16_t at = 5; at + 3 <= size;) {
    const uint8_t type = value[at];
    const uint16_t length = be16(value + at + 1);
    if (at + 3 + length > size) return "";
    if (type == kSubTlvSslCn) return std::string(reinterpret_cast<const char*>(value + at + 3), length);
    at = static_cast<uint16_t>(at + 3 + length);
  }
  return "";
}

}  // namespace

ProxyParse parse_proxy_header(std::span<const std::byte> input, ProxyHeader& header, std::string& why) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(input.data());
  const size_t compared = std::min<size_t>(input.size(), sizeof kSignature);
  if (std::memcmp(bytes, kSignature, compared) != 0) {
    why = "a trusted relay must start with a PROXY protocol v2 header";
    return ProxyParse::invalid;
  }
  if (input.size() < kFixedBytes) return ProxyParse::need_more;
  const uint8_t command = bytes[12];
  const uint8_t family = bytes[13];
  const uint32_t size = kFixedBytes + be16(bytes + 14);
  if (command != kCommandLocal && command != kCommandProxy) {
    why = "PROXY v2: unknown version/command byte";
    return ProxyParse::invalid;
  }
  if (size > kProxyHeaderMaxBytes) {
    why = "PROXY v2 header larger than " + std::to_string(kProxyHeaderMaxBytes) + " bytes";
    return ProxyParse::invalid;
  }
  if (input.size() < size) return ProxyParse::need_more;
  header = {};
  header.size_bytes = size;
  header.local = command == kCommandLocal;
  if (header.local) return ProxyParse::done;
  uint32_t at = kFixedBytes;
  if (family == kFamilyTcp4 && size >= kFixedBytes + 12) {
    auto& in = reinterpret_cast<sockaddr_in&>(header.source.storage);
    in.sin_family = AF_INET;
    std::memcpy(&in.sin_addr, bytes + at, 4);
    std::memcpy(&in.sin_port, bytes + at + 8, 2);
    header.source.size_bytes = sizeof in;
    at += 12;
  } else if (family == kFamilyTcp6 && size >= kFixedBytes + 36) {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(header.source.storage);
    in6.sin6_family = AF_INET6;
    std::memcpy(&in6.sin6_addr, bytes + at, 16);
    std::memcpy(&in6.sin6_port, bytes + at + 32, 2);
    header.source.size_bytes = sizeof in6;
    at += 36;
  } else {
    why = "PROXY v2: only TCP over IPv4 or IPv6 is accepted";
    return ProxyParse::invalid;
  }
  while (at + 3 <= size) {
    const uint8_t type = bytes[at];
    const uint16_t length = be16(bytes + at + 1);
    if (at + 3 + length > size) {
      why = "PROXY v2: a TLV runs past the header";
      return ProxyParse::invalid;
    }
    if (type == kTlvSsl) header.verified_client_name = verified_cn(bytes + at + 3, length);
    at += 3 + length;
  }
  return ProxyParse::done;
}

}  // namespace gatehouse::net
