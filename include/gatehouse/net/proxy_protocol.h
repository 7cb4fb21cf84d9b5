// PROXY protocol v2 (haproxy.org/download/2.6/doc/proxy-protocol.txt), accepted
// only from `trusted_relays` addresses: an L4 balancer in front of a gateway
// tier, or a TLS-terminating relay (HAProxy with send-proxy-v2-ssl-cn) that
// vouches for the agent's certificate name. Anyone else sending it fails TLS.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/config/config_types.h"

namespace gatehouse::net {

using config::Subnet;

inline constexpr uint32_t kProxyHeaderMaxBytes = 4'096;  // larger is refused: no legitimate relay sends that much

struct ProxyHeader {
  uint32_t size_bytes = 0;            // header bytes to skip before TLS
  bool local = false;                 // LOCAL command (a relay's health check): no client behind it
  runtime::PeerAddress source;        // the client the relay accepted (PROXY, TCP4/TCP6)
  std::string verified_client_name;   // PP2_TYPE_SSL with a verified client certificate: its CN
};

enum class ProxyParse : uint8_t { need_more, done, invalid };

// Parses a v2 header from the front of `bytes`; `why` on invalid.
ProxyParse parse_proxy_header(std::span<const std::byte> bytes, ProxyHeader& header, std::string& why);

}  // namespace gatehouse::net
