// The listener's door (net::Gate) over real sockets and real TLS: HELLO must
// name the certificate's identity; Kerberos agents prove theirs in AUTH frames
// against a real KDC, bound to the TLS channel; everything else is refused
// with a DENY that says why and an event, without disturbing other sessions.
#include <doctest/doctest.h>

#include <optional>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>

#include "gatehouse/config/config.h"
#include "gatehouse/net/gate.h"
#include "gatehouse/runtime/runtime.h"
#include "tls/session.h"
#include "krb/gss.h"
#include "test_client.h"
#include "test_kdc.h"
#include "test_pki.h"
#include "test_support.h"

using namespace gatehouse;
using namespace std::chrono_literals;
using testing::BlockingClient;

namespace {

// A parent that welcomes whoever the gate lets through, answers PING, and
// refuses DATA (so a test can make the role deny an admitted session). With
// `defer_next_welcome`, the next session waits for its HELLO_OK until another
// session sends PING kWelcomeNonce (a parent slow to answer its OPEN).
class WelcomingRole final : public net::SessionHandler {
 public:
  void on_authenticated(net::Children& gate, runtime::Shard& shard, net::Conn& conn) override {
    {
      std::lock_guard lock(mutex);
      admitted.push_back(conn.gate.identity);
    }
    if (defer_next_welcome.exchange(false)) {
      deferred = conn.id;
      return;
    }
    welcome(gate, shard, conn);
  }
  static void welcome(net::Children& gate, runtime::Shard& shard, net::Conn& conn) {
    gate.send(shard, conn, {0, proto::HelloOk{proto::kVersion, 60, 65'536, 0, "gw1.example.test"}});
  }
  void on_frame(net::Children& gate, runtime::Shard& shard, net::Conn& conn, const proto::Frame& frame) override {
    const auto* trigger = std::get_if<proto::Ping>(&frame.body);
    if (net::Conn* waiting = deferred ? gate.find(*deferred) : nullptr;
        waiting != nullptr && trigger != nullptr && trigger->nonce == kWelcomeNonce) {
      welcome(gate, shard, *waiting);
      deferred.reset();
    }
    if (const auto* ping = std::get_if<proto::Ping>(&frame.body)) gate.send(shard, conn, {0, proto::Pong{ping->nonce}});
    if (std::holds_alternative<proto::Data>(frame.body)) {
      gate.deny(shard, conn, proto::Reason::protocol_error, log::EventId::protocol_violation, "no DATA here");
    }
  }
  void on_closed(net::Children&, runtime::Shard&, net::Conn&) override { closed.fetch_add(1); }

  std::atomic<uint32_t> closed{0};
  static constexpr uint64_t kWelcomeNonce = 7'777;
  std::atomic<bool> defer_next_welcome{false};
  std::optional<runtime::ConnId> deferred;  // the shard's only

  std::mutex mutex;
  std::vector<net::Identity> admitted;
};

struct GatedListener {
  // idle_timeout_s: an authenticated child silent this long is closed (one
  // missed heartbeat of that interval).
  explicit GatedListener(bool with_kerberos, uint32_t hello_timeout_ms = 5'000,
                         std::vector<config::Subnet> trusted_relays = {}, uint32_t idle_timeout_s = 180)
      : live(settings(hello_timeout_ms, idle_timeout_s)),
        context({.side = tls::Side::server, .cert_path = tls::pki().path("gw1.example.test.crt"),
                 .key_path = tls::pki().path("gw1.example.test.key"), .ca_path = tls::pki().path("ca.crt"),
                 .peer_certificate = tls::PeerCertificate::optional}),
        pool(2, 64), runtime(limits()) {
    REQUIRE(context.reload() == "");
    if (with_kerberos) {
      std::string why;
      kerberos.store(krb::AcceptorCredential::load(testing::kdc().keytab("gw1-current"), why));
      REQUIRE_MESSAGE(kerberos.load() != nullptr, why);
    }
    std::string why;
    runtime::PeerAddress address;
    REQUIRE(runtime::make_address("127.0.0.1", 0, address, why));
    REQUIRE(runtime.listen(address, 0, port, why));
    REQUIRE_MESSAGE(runtime.start([&, trusted_relays](uint32_t) {
      gate = std::make_unique<net::Gate>(kerberos, pool, role, limits().connections_per_shard,
                                         net::GateOptions{live, "gw1.example.test"});
      auto tls = std::make_unique<net::TlsServer>(context, pool, *gate, limits().connections_per_shard,
                                                  net::TlsServerLimits{live, trusted_relays});
      gate->attach(*tls);
      return tls;
    }, why), why);
  }
  static runtime::RuntimeLimits limits() {
    runtime::RuntimeLimits l;
    l.shards = 1;
    l.connections_per_shard = 256;
    return l;
  }
  static config::Config settings(uint32_t hello_timeout_ms, uint32_t idle_timeout_s) {
    config::Config config;
    config.timeouts.hello_timeout_ms = hello_timeout_ms;
    config.timeouts.heartbeat_interval_s = idle_timeout_s;
    config.timeouts.missed_heartbeats = 1;
    return config;
  }
  config::LiveSettings live;
  tls::ReloadableContext context;
  std::atomic<std::shared_ptr<const krb::AcceptorCredential>> kerberos;
  runtime::WorkerPool pool;
  WelcomingRole role;
  std::unique_ptr<net::Gate> gate;
  uint16_t port = 0;
  runtime::Runtime runtime;  // last: stopped before the rest goes
};

std::shared_ptr<const tls::Context> cert_agent(const std::string& name) { return tls::pki().client(name); }

std::shared_ptr<const tls::Context> kerberos_agent() {
  return tls::Pki::load({.side = tls::Side::client, .peer_certificate = tls::PeerCertificate::none});
}

proto::Hello hello(const std::string_view name, proto::AuthMethod auth = proto::AuthMethod::cert,
                   proto::Role role = proto::Role::agent) {
  return {proto::kVersion, proto::kVersion, role, auth, name, {}};
}

// The DENY a refused child gets: reason and text.
std::pair<proto::Reason, std::string> denial(BlockingClient& client) {
  proto::Frame frame;
  REQUIRE(client.next_frame(frame));
  const auto* deny = std::get_if<proto::Deny>(&frame.body);
  REQUIRE_MESSAGE(deny != nullptr, proto::to_string(proto::frame_type(frame.body)));
  std::pair<proto::Reason, std::string> result{deny->reason, std::string(deny->text)};
  CHECK(client.closed_by_peer());
  return result;
}

bool welcomed(BlockingClient& client) {
  proto::Frame frame;
  if (!client.next_frame(frame) || !std::holds_alternative<proto::HelloOk>(frame.body)) return false;
  client.send_frame({0, proto::Ping{42}});
  return client.next_frame(frame) && std::holds_alternative<proto::Pong>(frame.body) &&
         std::get<proto::Pong>(frame.body).nonce == 42;
}

std::shared_ptr<const krb::InitiatorCredential> web01_kerberos() {
  std::string why;
  static const auto credential =
      krb::InitiatorCredential::load(testing::kdc().keytab("web01"), "host/web01.example.test", why);
  REQUIRE_MESSAGE(credential != nullptr, why);
  return credential;
}

// HELLO(kerberos) then the AUTH exchange with `binding`; the gate's answer
// after the last AUTH is left for the caller.
void kerberos_hello(BlockingClient& client, std::string_view name, const krb::ChannelBinding& binding) {
  client.send_frame({0, hello(name, proto::AuthMethod::kerberos)});
  krb::Initiator initiator(web01_kerberos(), "gatehouse", "gw1.example.test", binding);
  krb::Step step = initiator.step({});
  REQUIRE_MESSAGE(step.state != krb::Step::failed, step.error);
  client.send_frame({0, proto::Auth{proto::AuthMechanism::gssapi_krb5, std::as_bytes(std::span(step.token))}});
}

krb::ChannelBinding binding_of(const BlockingClient& client) {
  krb::ChannelBinding binding{};
  REQUIRE(client.session.channel_binding(binding));
  return binding;
}

}  // namespace

TEST_CASE("gate: a cert agent whose HELLO names its certificate is admitted") {
  GatedListener listener(false);
  BlockingClient agent(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
  REQUIRE(agent.handshake());
  agent.send_frame({0, hello("WEB01.example.test")});  // DNS names compare without case
  CHECK(welcomed(agent));
  std::lock_guard lock(listener.role.mutex);
  REQUIRE(listener.role.admitted.size() == 1);
  CHECK(listener.role.admitted[0].name == "WEB01.example.test");
  CHECK(listener.role.admitted[0].auth == proto::AuthMethod::cert);
}

TEST_CASE("gate: a certificate with a gateway's EKUs may act as a gateway") {
  GatedListener listener(false);
  BlockingClient child(tls::pki().client("gw1b.example.test"), "gw1.example.test", listener.port);
  REQUIRE(child.handshake());
  child.send_frame({0, hello("gw1b.example.test", proto::AuthMethod::cert, proto::Role::gateway)});
  CHECK(welcomed(child));
  std::lock_guard lock(listener.role.mutex);
  REQUIRE(listener.role.admitted.size() == 1);
  CHECK(listener.role.admitted[0].role == proto::Role::gateway);
}

TEST_CASE("gate: an authenticated child silent for its idle timeout is closed (DENY timeout, 30032); one that pings stays") {
  GatedListener listener(false, 5'000, {}, 1);
  BlockingClient silent(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
  BlockingClient pinging(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
  for (BlockingClient* client : {&silent, &pinging}) {
    REQUIRE(client->handshake());
    client->send_frame({0, hello("web01.example.test")});
    REQUIRE(welcomed(*client));
  }
  proto::Frame frame;
  for (int i = 0; i < 8; ++i) {  // 3.2 s: three idle timeouts
    pinging.send_frame({0, proto::Ping{static_cast<uint64_t>(i)}});
    REQUIRE(pinging.next_frame(frame));
    REQUIRE(std::holds_alternative<proto::Pong>(frame.body));
    std::this_thread::sleep_for(400ms);
  }
  const auto [reason, text] = denial(silent);
  CHECK(reason == proto::Reason::timeout);
  CHECK(text.starts_with("nothing heard from the child for "));
}

// Its heartbeat comes with HELLO_OK: a child waiting for its welcome (the
// parent slow to answer) is not silent, however long that takes; once
// welcomed, its idle time counts.
TEST_CASE("gate: a child's idle time starts at its HELLO_OK, not at its HELLO") {
  GatedListener listener(false, 5'000, {}, 1);
  BlockingClient other(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
  REQUIRE(other.handshake());
  other.send_frame({0, hello("web01.example.test")});
  REQUIRE(welcomed(other));
  listener.role.defer_next_welcome = true;
  BlockingClient waiting(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
  REQUIRE(waiting.handshake());
  waiting.send_frame({0, hello("web01.example.test")});
  proto::Frame frame;
  for (uint64_t i = 0; i < 7; ++i) {  // ~2.8 s, 2.8 idle timeouts, without a welcome (the other one pings)
    other.send_frame({0, proto::Ping{i}});
    REQUIRE(other.next_frame(frame));
    std::this_thread::sleep_for(400ms);
  }
  other.send_frame({0, proto::Ping{WelcomingRole::kWelcomeNonce}});  // the role welcomes the waiting one now
  REQUIRE(other.next_frame(frame));
  REQUIRE(waiting.next_frame(frame));
  CHECK_MESSAGE(std::holds_alternative<proto::HelloOk>(frame.body), proto::to_string(proto::frame_type(frame.body)));
  const auto started = std::chrono::steady_clock::now();
  const auto [reason, text] = denial(waiting);  // silent after its welcome: the idle timeout applies
  const auto after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  CHECK(reason == proto::Reason::timeout);
  CHECK(text.starts_with("nothing heard from the child for "));
  CHECK(after_ms.count() >= 900);
}

// A parent that never answers the OPEN (a rogue one upstream) does not hold
// the child's slot for ever: idle limit + hello_timeout_ms from its HELLO.
TEST_CASE("gate: a child never welcomed is closed once its wait passes the idle limit plus the HELLO timeout") {
  GatedListener listener(false, 300, {}, 1);
  listener.role.defer_next_welcome = true;
  BlockingClient waiting(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
  REQUIRE(waiting.handshake());
  const auto sent = std::chrono::steady_clock::now();
  waiting.send_frame({0, hello("web01.example.test")});
  const auto [reason, text] = denial(waiting);
  const auto after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - sent);
  CHECK(reason == proto::Reason::timeout);
  CHECK_MESSAGE(text.starts_with("its parent did not welcome it within "), text);
  CHECK(after_ms.count() >= 1'250);
}

// Backpressure is ours, not the child's silence; bytes that still come in after
// the pause (reads already done) must not push its last word into the future.
TEST_CASE("gate: a child's idle clock stops while we hold its bytes back") {
  net::IdleClock clock;
  clock.heard(1'000);
  clock.pause(1'300);
  CHECK(clock.idle_ms(9'000) == 300);  // paused: frozen at its silence before
  clock.resume(9'000);
  CHECK(clock.idle_ms(9'100) == 400);
  clock.pause(9'100);
  clock.heard(9'150);  // a read already in flight when we paused
  clock.resume(12'000);
  CHECK(clock.idle_ms(12'000) == 0);
  CHECK(clock.idle_ms(12'250) == 250);
  clock.heard(12'500);
  CHECK(clock.idle_ms(12'400) == 0);  // never negative (an earlier clock)
}

TEST_CASE("gate: a session the role itself denies still ends with on_closed (its state must go)") {
  GatedListener listener(false);
  BlockingClient agent(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
  REQUIRE(agent.handshake());
  agent.send_frame({0, hello("web01.example.test")});
  REQUIRE(welcomed(agent));
  const std::string payload = "x";
  agent.send_frame({0, proto::Data{1, proto::DataKind::event, std::as_bytes(std::span(payload))}});
  CHECK(denial(agent).first == proto::Reason::protocol_error);
  CHECK(testing::wait_until([&] { return listener.role.closed.load() == 1; }, std::chrono::seconds(5)));
}

TEST_CASE("gate: refusals say why, log an event, and leave other sessions alone") {
  const std::string log_path = (tls::pki().dir / "gate.log").string();
  std::string log_text;
  {
    testing::StderrCapture capture(log_path);
    GatedListener listener(false, 300);
    BlockingClient bystander(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
    REQUIRE(bystander.handshake());
    bystander.send_frame({0, hello("web01.example.test")});
    proto::Frame frame;
    REQUIRE(bystander.next_frame(frame));

    SUBCASE("HELLO names someone else") {
      BlockingClient agent(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
      REQUIRE(agent.handshake());
      agent.send_frame({0, hello("web02.example.test")});
      const auto [reason, text] = denial(agent);
      CHECK(reason == proto::Reason::name_mismatch);
      CHECK(text == "HELLO name web02.example.test is not the certificate's identity web01.example.test");
    }
    SUBCASE("an agent's certificate claiming role = gateway (it would speak for any agent)") {
      BlockingClient agent(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
      REQUIRE(agent.handshake());
      agent.send_frame({0, hello("web01.example.test", proto::AuthMethod::cert, proto::Role::gateway)});
      const auto [reason, text] = denial(agent);
      CHECK(reason == proto::Reason::auth_failed);
      CHECK(text.starts_with("HELLO says role = gateway but the certificate of web01.example.test lacks a gateway's "
                             "extended key usage"));
    }
    SUBCASE("auth = cert without a certificate") {
      BlockingClient agent(kerberos_agent(), "gw1.example.test", listener.port);
      REQUIRE(agent.handshake());
      agent.send_frame({0, hello("web01.example.test")});
      const auto [reason, text] = denial(agent);
      CHECK(reason == proto::Reason::auth_failed);
      CHECK(text == "HELLO says auth = cert but the client presented no certificate");
    }
    SUBCASE("a Kerberos agent where no keytab is configured") {
      BlockingClient agent(kerberos_agent(), "gw1.example.test", listener.port);
      REQUIRE(agent.handshake());
      agent.send_frame({0, hello("web01.example.test", proto::AuthMethod::kerberos)});
      CHECK(denial(agent).first == proto::Reason::auth_failed);
    }
    SUBCASE("DATA before HELLO") {
      BlockingClient agent(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
      REQUIRE(agent.handshake());
      agent.send_frame({0, proto::Data{1, proto::DataKind::event, {}}});
      const auto [reason, text] = denial(agent);
      CHECK(reason == proto::Reason::protocol_error);
      CHECK(text == "DATA before the session was authenticated");
    }
    SUBCASE("a malformed frame") {
      BlockingClient agent(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
      REQUIRE(agent.handshake());
      const std::array<std::byte, 12> garbage{std::byte{1}, std::byte{0x7F}};  // version 1, type 0x7F
      agent.send_plaintext(garbage);
      const auto [reason, text] = denial(agent);
      CHECK(reason == proto::Reason::protocol_error);
      CHECK(text == "malformed frame: unknown_type");
    }
    SUBCASE("silent after TLS") {
      BlockingClient agent(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
      REQUIRE(agent.handshake());
      CHECK(denial(agent).first == proto::Reason::timeout);
    }
    bystander.send_frame({0, proto::Ping{7}});
    REQUIRE(bystander.next_frame(frame));
    CHECK(std::holds_alternative<proto::Pong>(frame.body));
    log_text = capture.text();
  }
  const bool logged = log_text.find(R"("event":21007,"name":"mutual_auth_failed")") != std::string::npos ||
                      log_text.find(R"("event":30010,"name":"protocol_violation")") != std::string::npos ||
                      log_text.find(R"("event":30031,"name":"handshake_timeout")") != std::string::npos;
  CHECK_MESSAGE(logged, log_text);
  CHECK(log_text.find(R"("peer":"127.0.0.1:)") != std::string::npos);
}

TEST_CASE("gate: a Kerberos agent proves its name in AUTH frames bound to the TLS channel") {
  GatedListener listener(true);
  SUBCASE("admitted, with mutual authentication") {
    BlockingClient agent(kerberos_agent(), "gw1.example.test", listener.port);
    REQUIRE(agent.handshake());
    krb::Initiator initiator(web01_kerberos(), "gatehouse", "gw1.example.test", binding_of(agent));
    krb::Step step = initiator.step({});
    agent.send_frame({0, hello("web01.example.test", proto::AuthMethod::kerberos)});
    agent.send_frame({0, proto::Auth{proto::AuthMechanism::gssapi_krb5, std::as_bytes(std::span(step.token))}});
    proto::Frame frame;
    REQUIRE(agent.next_frame(frame));
    const auto* reply = std::get_if<proto::Auth>(&frame.body);
    REQUIRE(reply != nullptr);
    const auto* token = reinterpret_cast<const uint8_t*>(reply->token.data());
    step = initiator.step({token, reply->token.size()});  // the gateway's AP-REP proves the gateway
    CHECK_MESSAGE(step.state == krb::Step::complete, step.error);
    CHECK(welcomed(agent));
    std::lock_guard lock(listener.role.mutex);
    REQUIRE(listener.role.admitted.size() == 1);
    CHECK(listener.role.admitted[0].auth == proto::AuthMethod::kerberos);
    CHECK(listener.role.admitted[0].name == "web01.example.test");
  }
  SUBCASE("HELLO claims another name than the principal") {
    BlockingClient agent(kerberos_agent(), "gw1.example.test", listener.port);
    REQUIRE(agent.handshake());
    kerberos_hello(agent, "web02.example.test", binding_of(agent));
    proto::Frame frame;
    REQUIRE(agent.next_frame(frame));  // the AP-REP comes first: the ticket itself was good
    const auto [reason, text] = denial(agent);
    CHECK(reason == proto::Reason::name_mismatch);
    CHECK(text.find("is not the Kerberos principal host/web01.example.test@GATEHOUSE.TEST") != std::string::npos);
  }
  SUBCASE("an exchange relayed from another TLS connection") {
    BlockingClient victim(kerberos_agent(), "gw1.example.test", listener.port);
    REQUIRE(victim.handshake());
    BlockingClient relay(kerberos_agent(), "gw1.example.test", listener.port);
    REQUIRE(relay.handshake());
    kerberos_hello(relay, "web01.example.test", binding_of(victim));
    const auto [reason, text] = denial(relay);
    CHECK(reason == proto::Reason::auth_failed);
    CHECK(text.find("channel bindings") != std::string::npos);
  }
}

TEST_CASE("principal to agent name: host/NAME@REALM or NAME@REALM") {
  CHECK(net::agent_name_of_principal("host/web01.example.test@GATEHOUSE.TEST") == "web01.example.test");
  CHECK(net::agent_name_of_principal("web01@GATEHOUSE.TEST") == "web01");
  CHECK(net::agent_name_of_principal("gatehouse/gw1.example.test@GATEHOUSE.TEST") == "");
  CHECK(net::agent_name_of_principal("web01") == "");
  CHECK(net::agent_name_of_principal("@GATEHOUSE.TEST") == "");
  CHECK(net::agent_name_of_principal("host/a b@R") == "");
}

namespace {

// A PROXY v2 header as HAProxy's send-proxy-v2-ssl-cn writes it: TCP4 from
// 10.9.8.7:4444, and PP2_TYPE_SSL with the client certificate's CN.
std::vector<std::byte> proxy_header(const std::string& cn, uint32_t verify) {
  std::vector<uint8_t> bytes = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 0};
  const std::vector<uint8_t> addresses = {10, 9, 8, 7, 127, 0, 0, 1, 0x11, 0x5C, 0x16, 0x5B};
  bytes.insert(bytes.end(), addresses.begin(), addresses.end());
  std::vector<uint8_t> ssl = {0x07, static_cast<uint8_t>(verify >> 24), static_cast<uint8_t>(verify >> 16),
                              static_cast<uint8_t>(verify >> 8), static_cast<uint8_t>(verify)};
  ssl.push_back(0x22);  // PP2_SUBTYPE_SSL_CN
  ssl.push_back(static_cast<uint8_t>(cn.size() >> 8));
  ssl.push_back(static_cast<uint8_t>(cn.size()));
  ssl.insert(ssl.end(), cn.begin(), cn.end());
  bytes.push_back(0x20);  // PP2_TYPE_SSL
  bytes.push_back(static_cast<uint8_t>(ssl.size() >> 8));
  bytes.push_back(static_cast<uint8_t>(ssl.size()));
  bytes.insert(bytes.end(), ssl.begin(), ssl.end());
  const size_t length = bytes.size() - 16;
  bytes[14] = static_cast<uint8_t>(length >> 8);
  bytes[15] = static_cast<uint8_t>(length);
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

std::vector<config::Subnet> loopback_relays() {
  config::Subnet subnet;
  std::string why;
  REQUIRE(config::parse_subnet("127.0.0.0/8", subnet, why));
  return {subnet};
}

}  // namespace

TEST_CASE("gate: a trusted relay's PROXY v2 header names the client and, verified, its identity") {
  const std::string log_path = (tls::pki().dir / "relay.log").string();
  std::string log_text;
  std::string expected_in_log;  // per subcase
  {
    testing::StderrCapture capture(log_path);
    GatedListener listener(false, 5'000, loopback_relays());
    SUBCASE("a verified client certificate's CN stands for the client") {
      BlockingClient relay(tls::pki().client("gw1b.example.test"), "gw1.example.test", listener.port);
      relay.send_raw(proxy_header("web01.example.test", 0));
      REQUIRE(relay.handshake());
      relay.send_frame({0, hello("web01.example.test")});
      CHECK(welcomed(relay));
      std::lock_guard lock(listener.role.mutex);
      REQUIRE(listener.role.admitted.size() == 1);
      CHECK(listener.role.admitted[0].name == "web01.example.test");
    }
    SUBCASE("a relayed client is an agent: the header does not carry its EKUs") {
      BlockingClient relay(tls::pki().client("gw1b.example.test"), "gw1.example.test", listener.port);
      relay.send_raw(proxy_header("gw1b.example.test", 0));
      REQUIRE(relay.handshake());
      relay.send_frame({0, hello("gw1b.example.test", proto::AuthMethod::cert, proto::Role::gateway)});
      CHECK(denial(relay).first == proto::Reason::auth_failed);
      expected_in_log = "lacks a gateway's extended key usage";
    }
    SUBCASE("an unverified one does not: the relay's own certificate is who is talking") {
      BlockingClient relay(tls::pki().client("gw1b.example.test"), "gw1.example.test", listener.port);
      relay.send_raw(proxy_header("web01.example.test", 1));
      REQUIRE(relay.handshake());
      relay.send_frame({0, hello("web01.example.test")});
      CHECK(denial(relay).first == proto::Reason::name_mismatch);
      expected_in_log = R"("peer":"10.9.8.7:4444 via 127.0.0.1:)";  // the client, and the relay it came through
    }
    SUBCASE("a trusted relay without the header is refused") {
      BlockingClient relay(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
      CHECK_FALSE(relay.handshake());
      expected_in_log = "must start with a PROXY protocol v2 header";
    }
    log_text = capture.text();
  }
  CHECK_MESSAGE(log_text.find(expected_in_log) != std::string::npos, log_text);
}

TEST_CASE("gate: a PROXY header from a peer that is not a trusted relay fails TLS") {
  GatedListener listener(false);
  BlockingClient client(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
  client.send_raw(proxy_header("someone.example.test", 0));
  CHECK_FALSE(client.handshake());
}

TEST_CASE("gate: answers sent while a record is being read do not disturb the rest of it") {
  // Regression: the listener sealed its answers into the buffer that held the
  // plaintext still being decoded; the next frame then read as garbage.
  GatedListener listener(false);
  BlockingClient agent(cert_agent("web01.example.test"), "gw1.example.test", listener.port);
  REQUIRE(agent.handshake());
  agent.send_frame({0, hello("web01.example.test")});
  proto::Frame frame;
  REQUIRE(agent.next_frame(frame));
  REQUIRE(std::holds_alternative<proto::HelloOk>(frame.body));
  constexpr uint64_t kPings = 500;
  std::vector<std::byte> pings(kPings * proto::kFrameHeaderBytes * 2);
  size_t used = 0;
  for (uint64_t nonce = 1; nonce <= kPings; ++nonce) {
    used += proto::encode({0, proto::Ping{nonce}}, std::span(pings).subspan(used)).size_bytes;
  }
  agent.send_plaintext(std::span(pings).first(used));  // one write: the PINGs arrive in a few records
  for (uint64_t nonce = 1; nonce <= kPings; ++nonce) {
    REQUIRE(agent.next_frame(frame));
    const auto* pong = std::get_if<proto::Pong>(&frame.body);
    REQUIRE_MESSAGE(pong != nullptr, proto::to_string(proto::frame_type(frame.body)));
    CHECK(pong->nonce == nonce);
  }
}
