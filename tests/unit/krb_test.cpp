// Kerberos mutual authentication against a real MIT KDC started for the run
// (tests/krb/kdc), bound to TLS channel bindings.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "krb/gss.h"
#include "gatehouse/krb/profile.h"
#include "test_kdc.h"

#include <gssapi/gssapi_krb5.h>
#include <krb5/krb5.h>
#include <profile.h>

using namespace gatehouse::krb;
using gatehouse::testing::kdc;
using gatehouse::testing::kRealm;
namespace fs = std::filesystem;

namespace {

ChannelBinding binding(uint8_t seed) {
  ChannelBinding value{};
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<uint8_t>(seed + i * 7);
  return value;
}

struct Outcome {
  Step initiator;
  Step acceptor;
};

// Runs the token exchange to its end (or the first failure).
Outcome exchange(Initiator& initiator, Acceptor& acceptor) {
  Outcome outcome;
  outcome.initiator = initiator.step({});
  for (int round = 0; round < 4 && outcome.initiator.state != Step::failed; ++round) {
    outcome.acceptor = acceptor.step(outcome.initiator.token);
    if (outcome.acceptor.state == Step::failed) break;
    if (outcome.initiator.state == Step::complete && outcome.acceptor.state == Step::complete) break;
    outcome.initiator = initiator.step(outcome.acceptor.token);
    if (outcome.initiator.state == Step::complete && outcome.acceptor.state == Step::complete) break;
  }
  return outcome;
}

template <class Credential, class... Args>
std::shared_ptr<const Credential> load(Args&&... args) {
  std::string why;
  auto credential = Credential::load(std::forward<Args>(args)..., why);
  REQUIRE_MESSAGE(credential != nullptr, why);
  return credential;
}

std::shared_ptr<const InitiatorCredential> web01_credential() {
  static const auto credential = load<InitiatorCredential>(kdc().keytab("web01"), "host/web01.example.test");
  return credential;
}

std::shared_ptr<const AcceptorCredential> gateway_credential() {
  static const auto credential = load<AcceptorCredential>(kdc().keytab("gw1-current"));
  return credential;
}

Initiator web01(const ChannelBinding& b) { return Initiator(web01_credential(), "gatehouse", "gw1.example.test", b); }

}  // namespace

TEST_CASE("Kerberos mutual authentication bound to the TLS channel") {
  Initiator initiator = web01(binding(1));
  Acceptor acceptor(gateway_credential(), binding(1));
  const Outcome outcome = exchange(initiator, acceptor);
  INFO("initiator: " << outcome.initiator.error << " acceptor: " << outcome.acceptor.error);
  REQUIRE(outcome.acceptor.state == Step::complete);
  REQUIRE(outcome.initiator.state == Step::complete);  // the acceptor's AP-REP proved the gateway
  CHECK(acceptor.client_principal() == std::string("host/web01.example.test@") + kRealm);
}

TEST_CASE("a relayed exchange (different TLS channel) is refused") {
  Initiator initiator = web01(binding(1));
  Acceptor acceptor(gateway_credential(), binding(2));
  const Outcome outcome = exchange(initiator, acceptor);
  REQUIRE(outcome.acceptor.state == Step::failed);
  CHECK(outcome.acceptor.error.find("channel binding") != std::string::npos);
}

TEST_CASE("a token without channel bindings is refused: it could come from any TLS connection") {
  // An initiator that binds nothing (not ours: Initiator always binds).
  const std::string target_text = "gatehouse@gw1.example.test";
  gss_buffer_desc target_buffer{target_text.size(), const_cast<char*>(target_text.data())};
  gss_name_t target = GSS_C_NO_NAME;
  OM_uint32 minor = 0;
  REQUIRE(gss_import_name(&minor, &target_buffer, GSS_C_NT_HOSTBASED_SERVICE, &target) == GSS_S_COMPLETE);
  gss_ctx_id_t context = GSS_C_NO_CONTEXT;
  gss_buffer_desc token{};
  const OM_uint32 major = gss_init_sec_context(&minor, web01_credential()->get(), &context, target,
                                               const_cast<gss_OID>(gss_mech_krb5), GSS_C_MUTUAL_FLAG, GSS_C_INDEFINITE,
                                               GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, nullptr, &token, nullptr, nullptr);
  REQUIRE(major == GSS_S_CONTINUE_NEEDED);
  const auto* bytes = static_cast<const uint8_t*>(token.value);
  Acceptor acceptor(gateway_credential(), binding(5));
  const Step step = acceptor.step(std::vector<uint8_t>(bytes, bytes + token.length));
  gss_release_buffer(&minor, &token);
  gss_delete_sec_context(&minor, &context, GSS_C_NO_BUFFER);
  gss_release_name(&minor, &target);
  REQUIRE(step.state == Step::failed);
  CHECK(step.error.find("no channel binding") != std::string::npos);
}

TEST_CASE("a replayed AP-REQ is refused") {
  Initiator initiator = web01(binding(3));
  const Step first = initiator.step({});
  REQUIRE(first.state == Step::continue_needed);
  Acceptor original(gateway_credential(), binding(3));
  REQUIRE(original.step(first.token).state == Step::complete);
  Acceptor replay(gateway_credential(), binding(3));
  const Step replayed = replay.step(first.token);
  REQUIRE(replayed.state == Step::failed);
  CHECK(replayed.error.find("replay") != std::string::npos);
}

TEST_CASE("a stale acceptor keytab (old kvno) is refused") {
  Initiator initiator = web01(binding(4));
  Acceptor acceptor(load<AcceptorCredential>(kdc().keytab("gw1")), binding(4));
  const Outcome outcome = exchange(initiator, acceptor);
  REQUIRE(outcome.acceptor.state == Step::failed);
  INFO(outcome.acceptor.error);
  CHECK(outcome.acceptor.error.find("kvno 3 not found in keytab; keytab is likely out of date") != std::string::npos);
}

TEST_CASE("an agent principal the KDC does not know cannot authenticate") {
  std::string why;
  CHECK(InitiatorCredential::load(kdc().keytab("gone"), "host/gone.example.test", why) == nullptr);
  CHECK(why.find("cannot get a ticket for host/gone.example.test") == 0);
  CHECK(why.find("not found in Kerberos database") != std::string::npos);
}

TEST_CASE("an agent whose keytab lacks its principal is told so") {
  std::string why;
  CHECK(InitiatorCredential::load(kdc().keytab("web01"), "host/other.example.test", why) == nullptr);
  CHECK(why.find("cannot get a ticket for host/other.example.test") == 0);
  CHECK(why.find("Keytab contains no suitable keys") != std::string::npos);
}

TEST_CASE("one agent credential serves many exchanges (reconnects cost no KDC round trip)") {
  for (uint8_t i = 0; i < 20; ++i) {
    Initiator initiator = web01(binding(static_cast<uint8_t>(100 + i)));
    Acceptor acceptor(gateway_credential(), binding(static_cast<uint8_t>(100 + i)));
    REQUIRE(exchange(initiator, acceptor).initiator.state == Step::complete);
  }
}

TEST_CASE("the PKINIT client plugin is disabled for the process, the realm's own profile still read") {
  kdc();  // sets KRB5_CONFIG to the test realm's krb5.conf
  const std::string realm_profile = std::getenv("KRB5_CONFIG");
  REQUIRE(disable_pkinit() == "");
  // The realm's profile, then ours: a memory file of this process, nothing on disk.
  const std::string layered = std::getenv("KRB5_CONFIG");
  const std::string prefix = realm_profile + ":/proc/self/fd/";
  REQUIRE(layered.starts_with(prefix));
  const std::string ours = fs::read_symlink(layered.substr(realm_profile.size() + 1)).string();
  CHECK(ours.starts_with("/memfd:gatehouse-krb5.conf"));

  krb5_context context = nullptr;
  REQUIRE(krb5_init_context(&context) == 0);
  profile_t profile = nullptr;
  REQUIRE(krb5_get_profile(context, &profile) == 0);
  const char* disabled_path[] = {"plugins", "clpreauth", "disable", nullptr};
  char** values = nullptr;
  REQUIRE(profile_get_values(profile, disabled_path, &values) == 0);
  bool pkinit_disabled = false;
  for (char** value = values; *value != nullptr; ++value) pkinit_disabled = pkinit_disabled || std::string(*value) == "pkinit";
  CHECK(pkinit_disabled);
  profile_free_list(values);
  char* realm = nullptr;
  REQUIRE(krb5_get_default_realm(context, &realm) == 0);
  CHECK(std::string(realm) == kRealm);  // the realm's profile is still in force
  krb5_free_default_realm(context, realm);
  profile_release(profile);
  krb5_free_context(context);
  // Kerberos still works with the layered profile.
  Initiator initiator = web01(binding(42));
  Acceptor acceptor(gateway_credential(), binding(42));
  CHECK(exchange(initiator, acceptor).acceptor.state == Step::complete);
  setenv("KRB5_CONFIG", realm_profile.c_str(), 1);
}
