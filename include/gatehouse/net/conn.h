// One accepted connection, whole: the record the listener stack keeps per
// connection slot, with every layer's context in it (HAProxy's `struct
// connection`, proxy.c's `struct conn`). The TLS layer, the gate and the role
// all work on this record; none keeps a table of its own. Its id is checked
// against the shard's once, where a call comes in from the shard (TlsServer);
// below that, a Conn& is live. Types only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "gatehouse/proto/frame_types.h"
#include "gatehouse/runtime/runtime_types.h"

namespace gatehouse::tls {
class Session;
}
namespace gatehouse::runtime {
class Shard;
}
namespace gatehouse::krb {
class Acceptor;
}
namespace gatehouse::proto {
class FrameDecoder;
}

namespace gatehouse::net {

// Who a child proved to be.
struct Identity {
  proto::Role role = proto::Role::agent;
  proto::AuthMethod auth = proto::AuthMethod::cert;
  std::string name;
  proto::Incarnation incarnation;  // an agent's, from its HELLO
};

enum class Stage : uint8_t {
  free,           // no connection in this slot
  handshake,      // TLS handshake (its steps run on the auth pool)
  hello,          // TLS up: HELLO comes next
  auth,           // a Kerberos agent: AUTH frames until GSSAPI completes
  authenticated,  // the role has the session
  closing,        // refused or failed: nothing more is read
};

// The time a client may take for a stage (TLS handshake; HELLO and AUTH),
// counted from its start and only while we wait for the client: time its
// steps spend in our auth queue is not its time, and new bytes never give any
// back (a ClientHello dripped a byte at a time runs out like a silent one).
struct ClientClock {
  uint32_t left_ms = 0;
  uint64_t waiting_since_ms = 0;
  bool waiting = false;

  void start(uint64_t now_ms, uint32_t budget_ms) {
    left_ms = budget_ms;
    waiting_since_ms = now_ms;
    waiting = true;
  }
  // Our turn (a step goes to the pool): the time waited is spent.
  void pause(uint64_t now_ms) {
    if (!waiting) return;
    const uint64_t spent_ms = now_ms - waiting_since_ms;
    left_ms = spent_ms >= left_ms ? 0 : left_ms - static_cast<uint32_t>(spent_ms);
    waiting = false;
  }
  // The client's turn again: what is left (0: nothing, close it).
  uint32_t resume(uint64_t now_ms) {
    waiting_since_ms = now_ms;
    waiting = true;
    return left_ms;
  }
};

// How long a welcomed child has been silent while we read it. Its bytes reset
// it; time we hold its bytes back (backpressure) is not its silence, and bytes
// that still arrive while paused leave nothing of its silence before.
struct IdleClock {
  uint64_t heard_at_ms = 0;   // its last bytes (or its welcome)
  uint64_t paused_at_ms = 0;  // we stopped reading it at
  bool paused = false;

  void heard(uint64_t now_ms) { heard_at_ms = now_ms; }
  void pause(uint64_t now_ms) {
    paused = true;
    paused_at_ms = now_ms;
  }
  void resume(uint64_t now_ms) {
    heard_at_ms = now_ms - silent_before_pause_ms();
    paused = false;
  }
  uint64_t idle_ms(uint64_t now_ms) const {
    if (paused) return silent_before_pause_ms();
    return now_ms > heard_at_ms ? now_ms - heard_at_ms : 0;
  }

 private:
  uint64_t silent_before_pause_ms() const { return paused_at_ms > heard_at_ms ? paused_at_ms - heard_at_ms : 0; }
};

struct HandshakeStep;  // a TLS step on the auth pool (tls_server.cpp)
struct AcceptStep;     // a GSSAPI accept step on the auth pool (gate.cpp)

// The TLS layer's part (TlsServer).
struct TlsContext {
  std::unique_ptr<tls::Session> session;
  std::vector<std::byte> pending;  // ciphertext that came while a step was on the pool
  HandshakeStep* step = nullptr;   // the step on the pool, if any
  bool stepped = false;            // a first step has run: later ones go first on the pool
  bool established = false;        // records can be sealed (stays true while closing)
  bool awaiting_proxy = false;     // from a trusted relay: the PROXY v2 header comes first
  ClientClock clock;               // the handshake's time, from accept
  std::optional<runtime::PeerAddress> relayed_peer;
  std::string relayed_identity;    // the relay verified the client's certificate: its CN
  std::string peer_serial;         // the client certificate's serial ("" without one): CRL reloads check it
  std::string dialled_gateway;     // a server dialled this connection: the gateway it must be
  std::vector<std::byte> outgoing; // plaintext of this turn, not yet sealed
  runtime::Shard* shard = nullptr; // once established: sealed records go straight to its send queue
};

// The gate's part (Gate): who the child claims and proves to be.
struct GateContext {
  std::string certificate_identity;  // "" without a client certificate
  bool certificate_gateway_eku = false;  // it may act as a gateway (serverAuth + clientAuth)
  Identity identity;
  std::unique_ptr<proto::FrameDecoder> decoder;
  std::unique_ptr<krb::Acceptor> acceptor;  // Kerberos exchange in progress
  AcceptStep* step = nullptr;               // the accept step on the pool, if any
  ClientClock clock;                        // HELLO and AUTH's time, from TLS up
  bool role_knows = false;                  // the role heard on_authenticated: it hears on_closed too
  IdleClock idle;                           // from its HELLO_OK; paused while the role holds its bytes back
  bool welcomed = false;                    // HELLO_OK went out: only now can the child keep its heartbeat
  // The session's line when it closes (30034): since HELLO_OK, what passed.
  uint64_t welcomed_at_ms = 0;
  uint64_t frames_in = 0;
  uint64_t bytes_in = 0;                    // plaintext: frames as received
  uint64_t bytes_out = 0;
};

// One agent's channel on a session (channel 0: the agent itself).
struct RoleChannel {
  uint32_t uplink_channel = 0;  // a gateway: the channel on the uplink it rides
  uint64_t heard_round = 0;     // a gateway: the heartbeat report it is already in
  uint64_t credit_bytes = 0;    // a gateway: DATA bytes the parent still allows (its grants, relayed)
  uint64_t unacked_bytes = 0;   // a server: DATA bytes received and not yet credited back
  uint64_t next_seq = 0;        // a server: the seq the agent's next event (or declared gap) must start at
  uint64_t incarnation = 0;     // a server: the agent's incarnation its events belong to now (0: none yet)
  // The agent's name (a server: lower-case; a gateway admission: the
  // gateway's). A gateway names only channels above 0 (channel 0 is the child).
  std::string agent;
  bool admission = false;       // a server: a chained gateway's admission, not an agent (no DATA)
  std::string scope;            // a server: the tier the agent came through, or "@direct"
  std::string path;             // a server: the gateways its OPEN crossed, nearest it first, ">"-joined ("" direct)
  proto::AuthMethod auth = proto::AuthMethod::cert;  // a server: how the agent proved itself at the first hop
};

// The role's part (GatewaySessions, ServerSessions).
struct RoleContext {
  bool open = false;     // the role admitted the session
  bool gateway = false;  // a chained gateway: its agents arrive as OPENs
  bool welcomed = false; // a gateway's child: the management group admitted it (HELLO_OK sent)
  uint32_t uplink = 0;   // a gateway's sessions: the uplink they ride
  // A gateway's child not read while its uplink is congested: its place in
  // that uplink's paused list (kNotPaused: read as usual).
  static constexpr uint32_t kNotPaused = UINT32_MAX;
  uint32_t paused_slot = kNotPaused;
  std::string name;      // a server: the peer's lower-case name
  std::unordered_map<uint32_t, RoleChannel> channels;
  // A server's gateway uplink: agents not approved yet it may still bring
  // (a token bucket, refilled at [approval] new_agents_per_minute).
  double new_agent_tokens = 0;
  uint64_t tokens_at_ms = 0;
  // A server's gateway uplink: the chained gateways admitted through it (a
  // gateway with several uplinks is admitted once per uplink), by name.
  std::unordered_map<std::string, uint32_t> admitted_gateways;
};

struct Conn {
  Conn();
  ~Conn();
  Conn(Conn&&) noexcept;
  Conn& operator=(Conn&&) noexcept;

  runtime::ConnId id;
  Stage stage = Stage::free;
  TlsContext tls;
  GateContext gate;
  RoleContext role;
};

}  // namespace gatehouse::net
