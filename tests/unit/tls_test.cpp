// TLS 1.3 sessions over memory buffers: real BoringSSL handshakes with a PKI
// generated per run, and the precise reason for every way one can fail.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <cstring>
#include <filesystem>
#include <string>

#include "tls/pki.h"
#include "gatehouse/tls/reload.h"
#include "tls/session.h"
#include "test_pki.h"
#include "test_support.h"

using namespace gatehouse::tls;
namespace fs = std::filesystem;

namespace {

// Moves ciphertext both ways until neither side has anything left to say.
void pump(Session& client, Session& server) {
  std::array<std::byte, 16 * 1024> buffer{};
  for (int round = 0; round < 20; ++round) {
    client.handshake();
    server.handshake();
    bool moved = false;
    while (size_t n = client.pull_ciphertext(buffer)) {
      server.push_ciphertext(std::span(buffer).first(n));
      moved = true;
    }
    while (size_t n = server.pull_ciphertext(buffer)) {
      client.push_ciphertext(std::span(buffer).first(n));
      moved = true;
    }
    if (!moved) return;
  }
}

std::string handshake_failure(const std::shared_ptr<const Context>& client_context,
                              const std::shared_ptr<const Context>& server_context, const std::string& server_name,
                              bool client_side) {
  Session client(client_context, server_name);
  Session server(server_context);
  pump(client, server);
  const HandshakeState state = client_side ? client.handshake() : server.handshake();
  REQUIRE(state == HandshakeState::failed);
  return client_side ? client.failure() : server.failure();
}

}  // namespace

TEST_CASE("mutual TLS 1.3: both identities, equal channel bindings, data both ways") {
  Session client(pki().client("web01.example.test"), "gw1.example.test");
  Session server(pki().server("gw1.example.test"));
  pump(client, server);
  REQUIRE(client.handshake() == HandshakeState::established);
  REQUIRE(server.handshake() == HandshakeState::established);
  CHECK(server.peer_identity() == "web01.example.test");
  CHECK(client.peer_identity() == "gw1.example.test");
  CHECK(SSL_version(client.ssl()) == TLS1_3_VERSION);
  std::array<uint8_t, 32> client_binding{};
  std::array<uint8_t, 32> server_binding{};
  REQUIRE(client.channel_binding(client_binding));
  REQUIRE(server.channel_binding(server_binding));
  CHECK(client_binding == server_binding);

  const std::string message = "HELLO from web01";
  REQUIRE(client.write(std::as_bytes(std::span(message))));
  pump(client, server);
  std::array<std::byte, 256> plaintext{};
  const int64_t n = server.read(plaintext);
  REQUIRE(n == static_cast<int64_t>(message.size()));
  CHECK(std::memcmp(plaintext.data(), message.data(), message.size()) == 0);
  CHECK(client.read(plaintext) == 0);  // nothing for the client: "wait", not an error
}

TEST_CASE("two TLS sessions never share a channel binding (a relayed GSSAPI exchange cannot match)") {
  std::array<uint8_t, 32> first{};
  std::array<uint8_t, 32> second{};
  for (auto* binding : {&first, &second}) {
    Session client(pki().client("web01.example.test"), "gw1.example.test");
    Session server(pki().server("gw1.example.test"));
    pump(client, server);
    REQUIRE(client.handshake() == HandshakeState::established);
    REQUIRE(client.channel_binding(*binding));
  }
  CHECK(first != second);
}

TEST_CASE("every certificate failure is named precisely") {
  const auto gateway = pki().server("gw1.example.test");
  SUBCASE("expired client certificate") {
    const std::string why = handshake_failure(pki().client("old.example.test"), gateway, "gw1.example.test", false);
    CHECK(why == "the client's certificate /CN=old.example.test expired on Jan 31 00:00:00 2020 GMT");
  }
  SUBCASE("client certificate not yet valid") {
    const std::string why = handshake_failure(pki().client("future.example.test"), gateway, "gw1.example.test", false);
    CHECK(why.find("the client's certificate /CN=future.example.test is not valid before Jan  1 00:00:00 2099 GMT") == 0);
  }
  SUBCASE("client certificate from another CA") {
    const auto partner = Pki::load({Side::client, pki().path("partner/web09.partner.test.crt"),
                                    pki().path("partner/web09.partner.test.key"), pki().path("ca.crt"), ""});
    const std::string why = handshake_failure(partner, gateway, "gw1.example.test", false);
    CHECK(why == "the client's certificate /CN=web09.partner.test is issued by /CN=partner CA, which is not a CA in " +
                     pki().path("ca.crt") + ": install that root CA here");
  }
  SUBCASE("revoked client certificate (server holds the CRL)") {
    const auto with_crl = Pki::load({Side::server, pki().path("gw1.example.test.crt"), pki().path("gw1.example.test.key"),
                                     pki().path("ca.crt"), pki().path("ca.crl")});
    const std::string why = handshake_failure(pki().client("lost.example.test"), with_crl, "gw1.example.test", false);
    CHECK(why == "the client's certificate /CN=lost.example.test is revoked (" + pki().path("ca.crl") + ")");
    Session good_client(pki().client("web01.example.test"), "gw1.example.test");
    Session server(with_crl);
    pump(good_client, server);
    CHECK(server.handshake() == HandshakeState::established);
  }
  SUBCASE("no client certificate") {
    const std::string why = handshake_failure(pki().client(""), gateway, "gw1.example.test", false);
    CHECK(why == "the client presented no certificate (a cert agent must present one)");
  }
  SUBCASE("server certificate without serverAuth") {
    const std::string why = handshake_failure(pki().client("web01.example.test"), pki().server("notaserver.example.test"),
                                              "notaserver.example.test", true);
    CHECK(why == "the server's certificate /CN=notaserver.example.test lacks the EKU serverAuth");
  }
  SUBCASE("server name mismatch") {
    const std::string why = handshake_failure(pki().client("web01.example.test"), gateway, "gw2.example.test", true);
    CHECK(why == "the server's certificate names gw1.example.test, expected gw2.example.test");
  }
  SUBCASE("the DMZ agent without the root CA (seed 003)") {
    const std::string why =
        handshake_failure(pki().client("web01.example.test", "partner/ca.crt"), gateway, "gw1.example.test", true);
    CHECK(why == "the server's certificate /CN=gw1.example.test is issued by /CN=gatehouse dev CA, which is not a CA in " +
                     pki().path("partner/ca.crt") + ": install that root CA here");
  }
  SUBCASE("the other side of a refusal hears why, as an alert") {
    const std::string why = handshake_failure(pki().client("web01.example.test", "partner/ca.crt"), gateway,
                                              "gw1.example.test", false);
    CHECK(why.rfind("the peer refused the handshake: TLSV1_ALERT_", 0) == 0);
  }
}

TEST_CASE("a server taking cert and Kerberos agents on one port: client certificate optional") {
  const auto gateway = pki().server("gw1.example.test", PeerCertificate::optional);
  // A Kerberos agent: no certificate, no CA; GSSAPI will prove the gateway.
  const auto kerberos_agent = Pki::load({Side::client, "", "", "", "", PeerCertificate::none});
  Session client(kerberos_agent, "gw1.example.test");
  Session server(gateway);
  pump(client, server);
  REQUIRE(server.handshake() == HandshakeState::established);
  CHECK(server.peer_identity() == "");
  // A cert agent on the same listener is still verified.
  CHECK(handshake_failure(pki().client("old.example.test"), gateway, "gw1.example.test", false)
            .find("expired on") != std::string::npos);
}

TEST_CASE("loading refuses unusable material and says which file") {
  std::string why;
  CHECK(Context::load({Side::server, pki().path("gw1.example.test.crt"), pki().path("web01.example.test.key"),
                       pki().path("ca.crt"), ""}, why) == nullptr);
  CHECK(why == pki().path("web01.example.test.key") + " is not the private key of " + pki().path("gw1.example.test.crt"));
  CHECK(Context::load({Side::server, pki().path("absent.crt"), pki().path("gw1.example.test.key"), pki().path("ca.crt"), ""},
                      why) == nullptr);
  CHECK(why.rfind(pki().path("absent.crt") + ": not a usable PEM certificate chain", 0) == 0);
  CHECK(Context::load({Side::server, pki().path("gw1.example.test.crt"), pki().path("gw1.example.test.key"),
                       pki().path("gw1.example.test.key"), ""}, why) == nullptr);
  CHECK(why.rfind(pki().path("gw1.example.test.key") + ": not a usable PEM CA file", 0) == 0);
}

namespace {

// Replaces `target` the way certificate tools do: write aside, then rename.
void replace_file(const fs::path& source, const fs::path& target) {
  fs::copy_file(source, target.string() + ".new", fs::copy_options::overwrite_existing);
  fs::rename(target.string() + ".new", target);
}

bool handshake_ok(const std::shared_ptr<const Context>& server_context, const std::string& server_name) {
  Session client(pki().client("web01.example.test"), server_name);
  Session server(server_context);
  pump(client, server);
  return client.handshake() == HandshakeState::established && server.handshake() == HandshakeState::established;
}

}  // namespace

TEST_CASE("a renewed certificate is taken live; sessions keep theirs; a broken one is refused and logged") {
  const fs::path live = pki().dir / "live";
  fs::create_directories(live);
  fs::copy_file(pki().path("gw1.example.test.crt"), live / "cert.pem", fs::copy_options::overwrite_existing);
  fs::copy_file(pki().path("gw1.example.test.key"), live / "key.pem", fs::copy_options::overwrite_existing);
  ReloadableContext context({Side::server, (live / "cert.pem").string(), (live / "key.pem").string(), pki().path("ca.crt"), ""});
  std::string log_text;
  {
    gatehouse::testing::StderrCapture capture((pki().dir / "reload.log").string());
    REQUIRE(context.reload() == "");
    const std::shared_ptr<const Context> before = context.current();
    std::atomic<int> reloads{0};
    FileWatcher watcher(context.paths(), 100, [&] {
      context.reload();
      ++reloads;
    });
    REQUIRE(watcher.ok());

    // The renewal: key and certificate replaced one after the other.
    replace_file(pki().path("gw1b.example.test.key"), live / "key.pem");
    replace_file(pki().path("gw1b.example.test.crt"), live / "cert.pem");
    REQUIRE(gatehouse::testing::wait_until([&] { return context.current()->certificate_subject() == "/CN=gw1b.example.test"; }, std::chrono::seconds(10)));
    CHECK(reloads == 1);  // one reload for both files, not a failed one in between
    CHECK(handshake_ok(context.current(), "gw1b.example.test"));
    CHECK(handshake_ok(before, "gw1.example.test"));  // what a session already holds still works

    // A broken replacement: refused, the renewed certificate stays in use.
    std::ofstream(live / "cert.pem") << "-----BEGIN CERTIFICATE-----\ngarbage\n";
    REQUIRE(gatehouse::testing::wait_until([&] { return reloads.load() == 2; }, std::chrono::seconds(10)));
    CHECK(context.current()->certificate_subject() == "/CN=gw1b.example.test");
    CHECK(handshake_ok(context.current(), "gw1b.example.test"));
    log_text = capture.text();
  }
  CHECK(log_text.find(R"("event":20053,"name":"certificate_loaded")") != std::string::npos);
  CHECK(log_text.find(R"("subject":"/CN=gw1b.example.test")") != std::string::npos);
  CHECK(log_text.find(R"("event":20051,"name":"certificate_invalid")") != std::string::npos);
  CHECK(log_text.find("certificate not loaded, the one in use stays") != std::string::npos);
}

namespace {

// A full handshake with `server_context`, then the client reads the tickets
// the server sent with its last flight.
bool connect(const std::shared_ptr<const Context>& client_context,
             const std::shared_ptr<const Context>& server_context, const std::string& server_name,
             std::string* server_saw = nullptr) {
  Session client(client_context, server_name);
  Session server(server_context);
  pump(client, server);
  REQUIRE_MESSAGE(client.handshake() == HandshakeState::established, client.failure());
  REQUIRE_MESSAGE(server.handshake() == HandshakeState::established, server.failure());
  std::array<std::byte, 64> plaintext{};
  CHECK(client.read(plaintext) == 0);  // takes the NewSessionTickets in
  if (server_saw != nullptr) *server_saw = server.peer_identity();
  CHECK(client.resumed() == server.resumed());
  return server.resumed();
}

std::shared_ptr<const Context> tier_member(const std::string& name, const std::string& keys) {
  return Pki::load({.side = Side::server, .cert_path = pki().path(name + ".crt"), .key_path = pki().path(name + ".key"),
                    .ca_path = pki().path("ca.crt"), .ticket_keys_path = keys});
}

}  // namespace

TEST_CASE("tickets: sent with the handshake, resume once, keep the client's identity") {
  const auto client = pki().client("web01.example.test");
  const auto server = pki().server("gw1.example.test");
  CHECK_FALSE(connect(client, server, "gw1.example.test"));
  std::string identity;
  CHECK(connect(client, server, "gw1.example.test", &identity));
  CHECK(identity == "web01.example.test");
  CHECK(connect(client, server, "gw1.example.test"));  // the resumed session issued a fresh ticket
  CHECK_FALSE(connect(client, pki().server("gw1b.example.test"), "gw1b.example.test"));  // per server name
}

TEST_CASE("tickets: a tier sharing a key file resumes across members, and rotation keeps old tickets") {
  const std::string keys = pki().path("tier-ticket.keys");
  std::string summary;
  REQUIRE(rotate_ticket_keys(keys, 3, summary) == "");
  CHECK(fs::status(keys).permissions() == (fs::perms::owner_read | fs::perms::owner_write));
  auto client_options = Context::Options{.side = Side::client, .cert_path = pki().path("web01.example.test.crt"),
                                         .key_path = pki().path("web01.example.test.key"),
                                         .ca_path = pki().path("ca.crt"), .resume_across_servers = true};
  const auto client = Pki::load(client_options);
  CHECK_FALSE(connect(client, tier_member("gw1.example.test", keys), "gw1.example.test"));
  CHECK(connect(client, tier_member("gw1b.example.test", keys), "gw1b.example.test"));  // failover: resumed

  // Not in the tier (its own keys): a full handshake, not a failure.
  CHECK_FALSE(connect(client, pki().server("gw1.example.test"), "gw1.example.test"));

  const auto before_rotation = tier_member("gw1.example.test", keys);
  CHECK_FALSE(connect(client, before_rotation, "gw1.example.test"));  // new ticket from the old key
  REQUIRE(rotate_ticket_keys(keys, 2, summary) == "");
  CHECK(connect(client, tier_member("gw1b.example.test", keys), "gw1b.example.test"));  // old key still opens
  REQUIRE(rotate_ticket_keys(keys, 1, summary) == "");
  CHECK_FALSE(connect(client, tier_member("gw1.example.test", keys), "gw1.example.test"));  // rotated out
}

TEST_CASE("a broken ticket key file is refused with the line and what to do") {
  const std::string keys = pki().path("broken-ticket.keys");
  std::ofstream(keys) << "# comment\n0123abcd\n";
  std::string why;
  CHECK(Context::load({.side = Side::server, .cert_path = pki().path("gw1.example.test.crt"),
                       .key_path = pki().path("gw1.example.test.key"), .ca_path = pki().path("ca.crt"),
                       .ticket_keys_path = keys},
                      why) == nullptr);
  CHECK(why == keys + ":2: a ticket key is 160 hex digits (make one with `gatehouse certs ticket-keys --file " + keys + "`)");
}

TEST_CASE("tickets: a session with its own identity never resumes (nor leaves) another identity's ticket") {
  std::string why;
  const auto ca = CertificateAuthority::load(pki().dir.string(), why);
  REQUIRE_MESSAGE(ca != nullptr, why);
  Minted minted;
  REQUIRE(ca->mint({.ca_dir = "", .out_dir = "", .role = CertRole::agent, .name = "minted.example.test"}, minted) == "");
  const auto client = pki().client("web01.example.test");
  const auto server = pki().server("gw1.example.test");
  CHECK_FALSE(connect(client, server, "gw1.example.test"));  // web01's ticket is now in the cache

  Session minted_client(client, "gw1.example.test");
  REQUIRE(minted_client.use_identity(minted.cert.get(), minted.key.get()));
  Session server_side(server);
  pump(minted_client, server_side);
  REQUIRE(server_side.handshake() == HandshakeState::established);
  CHECK_FALSE(server_side.resumed());
  CHECK(server_side.peer_identity() == "minted.example.test");
}

TEST_CASE("tickets: a resumed session is checked against the CRL in force now, not the one it was issued under") {
  const std::string keys = pki().path("crl-ticket.keys");
  std::string summary;
  REQUIRE(rotate_ticket_keys(keys, 1, summary) == "");
  // The CA's next CRL, in a copy of its folder: it revokes web01 as well.
  const fs::path later = pki().dir / "crl-later";
  fs::create_directories(later);
  for (const char* file : {"ca.crt", "ca.key", "ca.crl"}) fs::copy_file(pki().dir / file, later / file);
  REQUIRE(revoke({.ca_dir = later.string(), .cert_path = pki().path("web01.example.test.crt")}, summary) == "");
  auto server_with = [&](const std::string& crl) {
    return Pki::load({.side = Side::server, .cert_path = pki().path("gw1.example.test.crt"),
                      .key_path = pki().path("gw1.example.test.key"), .ca_path = pki().path("ca.crt"),
                      .crl_path = crl, .ticket_keys_path = keys});
  };
  const auto client = pki().client("web01.example.test");
  CHECK_FALSE(connect(client, server_with(pki().path("ca.crl")), "gw1.example.test"));  // full handshake: not revoked yet
  const auto reloaded = server_with((later / "ca.crl").string());
  Session client_side(client, "gw1.example.test");
  Session server_side(reloaded);
  pump(client_side, server_side);
  CHECK(server_side.handshake() == HandshakeState::failed);
  CHECK(server_side.failure() == "the peer's certificate (web01.example.test) is revoked (" + (later / "ca.crl").string() +
                                     "): its resumed session is refused");
}

TEST_CASE("a reload refuses what this instance must not serve, and keeps what it has: expired, not yet valid, another name, the wrong role, another key, an expired CRL") {
  const fs::path live = pki().dir / "own";
  fs::create_directories(live);
  auto install = [&](const std::string& cert, const std::string& key) {
    fs::copy_file(pki().path(cert + ".crt"), live / "cert.pem", fs::copy_options::overwrite_existing);
    fs::copy_file(pki().path(key + ".key"), live / "key.pem", fs::copy_options::overwrite_existing);
  };
  install("gw1.example.test", "gw1.example.test");
  ContextOptions options{.side = Side::server, .cert_path = (live / "cert.pem").string(),
                         .key_path = (live / "key.pem").string(), .ca_path = pki().path("ca.crt"),
                         .own_name = "gw1.example.test", .own_role = CertRole::gateway};
  ReloadableContext context(options);
  REQUIRE(context.reload() == "");
  const std::shared_ptr<const Context> good = context.current();
  auto refused = [&](const std::string& cert, const std::string& key) {
    install(cert, key);
    const std::string why = context.reload();
    CHECK(context.current() == good);
    return why;
  };
  CHECK(refused("old.example.test", "old.example.test").find("certificate expired: notAfter") != std::string::npos);
  CHECK(refused("future.example.test", "future.example.test").find("not yet valid") != std::string::npos);
  CHECK(refused("gw1b.example.test", "gw1b.example.test").find("name mismatch: expected gw1.example.test") != std::string::npos);
  CHECK(refused("web01.example.test", "web01.example.test").find("wrong EKU: role gateway") != std::string::npos);
  CHECK(refused("gw1.example.test", "gw1b.example.test").find("key mismatch") != std::string::npos);

  // A CRL whose nextUpdate passed: refused (fail closed), unless the instance allows it.
  const fs::path ca_copy = pki().dir / "crl-expired";
  fs::create_directories(ca_copy);
  for (const char* file : {"ca.crt", "ca.key"}) fs::copy_file(pki().dir / file, ca_copy / file);
  std::string summary;
  REQUIRE(renew_crl({.ca_dir = ca_copy.string(), .days = 30, .this_update = std::time(nullptr) - 40 * 86'400}, summary) == "");
  install("gw1.example.test", "gw1.example.test");
  options.crl_path = (ca_copy / "ca.crl").string();
  ReloadableContext strict(options);
  CHECK(strict.reload().find("CRL expired: " + options.crl_path) != std::string::npos);
  CHECK(strict.current() == nullptr);
  // Past nextUpdate while running (loaded before, no check): fail closed refuses the handshake and says why.
  const auto running = Pki::load(options);
  CHECK(handshake_failure(pki().client("web01.example.test"), running, "gw1.example.test", false).starts_with(
      "the CRL " + options.crl_path + " has expired: certificates cannot be checked, so none is taken"));
  options.crl_expired_allowed = true;
  ReloadableContext lenient(options);
  CHECK(lenient.reload() == "");
  CHECK(handshake_ok(lenient.current(), "gw1.example.test"));
  REQUIRE(renew_crl({.ca_dir = ca_copy.string(), .days = 30}, summary) == "");  // `gatehouse certs crl`: fresh again
  options.crl_expired_allowed = false;
  ReloadableContext renewed(options);
  CHECK(renewed.reload() == "");
}
