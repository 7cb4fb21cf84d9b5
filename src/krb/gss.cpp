#include "krb/gss.h"

#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>

#include <cstring>

namespace gatehouse::krb {
namespace {

// "major text; minor text" from gss_display_status.
std::string status_text(OM_uint32 major, OM_uint32 minor) {
  std::string text;
  for (const auto& [code, type] : {std::pair{major, GSS_C_GSS_CODE}, std::pair{minor, GSS_C_MECH_CODE}}) {
    if (code == 0) continue;
    OM_uint32 context = 0;
    do {
      OM_uint32 ignored = 0;
      gss_buffer_desc message{};
      gss_display_status(&ignored, code, type, type == GSS_C_MECH_CODE ? gss_mech_krb5 : GSS_C_NO_OID, &context, &message);
      const std::string_view part(static_cast<const char*>(message.value), message.length);
      if (part != "Success") text.append(text.empty() ? "" : "; ").append(part);  // a minor code of 0 says nothing
      gss_release_buffer(&ignored, &message);
    } while (context != 0);
  }
  return text;
}

// RFC 9266: application data "tls-exporter:" followed by the exporter value.
struct Bindings {
  explicit Bindings(const ChannelBinding& binding) {
    static constexpr char kPrefix[] = "tls-exporter:";
    std::memcpy(data, kPrefix, sizeof kPrefix - 1);
    std::memcpy(data + sizeof kPrefix - 1, binding.data(), binding.size());
    value.initiator_addrtype = GSS_C_AF_NULLADDR;
    value.acceptor_addrtype = GSS_C_AF_NULLADDR;
    value.application_data = {sizeof data, data};
  }
  unsigned char data[13 + 32];
  gss_channel_bindings_struct value{};
};

Step finish(OM_uint32 major, OM_uint32 minor, gss_buffer_desc& output) {
  Step step;
  OM_uint32 ignored = 0;
  if (output.length > 0) {
    const auto* bytes = static_cast<const uint8_t*>(output.value);
    step.token.assign(bytes, bytes + output.length);
  }
  gss_release_buffer(&ignored, &output);
  if (GSS_ERROR(major)) {
    step.state = Step::failed;
    step.error = status_text(major, minor);
  } else {
    step.state = (major & GSS_S_CONTINUE_NEEDED) ? Step::continue_needed : Step::complete;
  }
  return step;
}

Step failed(std::string error) {
  Step step;
  step.error = std::move(error);
  return step;
}

// Credentials from a one-entry credential store ("keytab" or "ccache"): the
// location comes from the config, never from the process environment.
std::string acquire(const char* store_key, const std::string& location, gss_cred_usage_t usage, gss_cred_id_t* out) {
  gss_key_value_element_desc element{store_key, location.c_str()};
  gss_key_value_set_desc store{1, &element};
  OM_uint32 minor = 0;
  const OM_uint32 major =
      gss_acquire_cred_from(&minor, GSS_C_NO_NAME, GSS_C_INDEFINITE, GSS_C_NO_OID_SET, usage, &store, out, nullptr, nullptr);
  return GSS_ERROR(major) ? status_text(major, minor) : "";
}

}  // namespace

std::shared_ptr<const AcceptorCredential> AcceptorCredential::load(const std::string& keytab_path, std::string& why) {
  std::shared_ptr<AcceptorCredential> credential(new AcceptorCredential());
  if (std::string error = acquire("keytab", keytab_path, GSS_C_ACCEPT, &credential->credential_); !error.empty()) {
    why = "keytab " + keytab_path + ": " + error;
    return nullptr;
  }
  return credential;
}

AcceptorCredential::~AcceptorCredential() {
  OM_uint32 minor = 0;
  if (credential_ != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &credential_);
}

// The TGT comes from krb5 directly: its errors name the KDC's reason
// ("Client ... not found in Kerberos database"), where GSSAPI would only say
// that no credentials were available.
std::shared_ptr<const InitiatorCredential> InitiatorCredential::load(const std::string& keytab_path,
                                                                     const std::string& principal, std::string& why) {
  std::shared_ptr<InitiatorCredential> credential(new InitiatorCredential());
  krb5_context& krb5 = credential->krb5_;
  if (krb5_error_code code = krb5_init_context(&krb5); code != 0) {
    why = "cannot initialise Kerberos: error " + std::to_string(code);
    return nullptr;
  }
  auto krb5_failure = [&](const char* what, krb5_error_code code) {
    const char* message = krb5_get_error_message(krb5, code);
    why = std::string(what) + " for " + principal + " (keytab " + keytab_path + "): " + message;
    krb5_free_error_message(krb5, message);
    return false;
  };
  const std::string ccache = "MEMORY:gatehouse-" + std::to_string(reinterpret_cast<uintptr_t>(credential.get()));
  krb5_principal client = nullptr;
  krb5_keytab keytab = nullptr;
  krb5_creds creds{};
  bool ok = false;
  if (krb5_error_code code = krb5_parse_name(krb5, principal.c_str(), &client); code != 0) {
    ok = krb5_failure("bad principal", code);
  } else if ((code = krb5_kt_resolve(krb5, keytab_path.c_str(), &keytab)) != 0) {
    ok = krb5_failure("cannot open keytab", code);
  } else if ((code = krb5_get_init_creds_keytab(krb5, &creds, client, keytab, 0, nullptr, nullptr)) != 0) {
    ok = krb5_failure("cannot get a ticket", code);
  } else if ((code = krb5_cc_resolve(krb5, ccache.c_str(), &credential->ccache_)) != 0 ||
             (code = krb5_cc_initialize(krb5, credential->ccache_, client)) != 0 ||
             (code = krb5_cc_store_cred(krb5, credential->ccache_, &creds)) != 0) {
    ok = krb5_failure("cannot cache the ticket", code);
  } else {
    ok = true;
  }
  krb5_free_cred_contents(krb5, &creds);
  if (keytab != nullptr) krb5_kt_close(krb5, keytab);
  if (client != nullptr) krb5_free_principal(krb5, client);
  if (!ok) return nullptr;
  if (std::string error = acquire("ccache", ccache, GSS_C_INITIATE, &credential->credential_); !error.empty()) {
    why = "credentials for " + principal + ": " + error;
    return nullptr;
  }
  return credential;
}

InitiatorCredential::~InitiatorCredential() {
  OM_uint32 minor = 0;
  if (credential_ != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &credential_);
  if (ccache_ != nullptr) krb5_cc_destroy(krb5_, ccache_);
  if (krb5_ != nullptr) krb5_free_context(krb5_);
}

Acceptor::Acceptor(std::shared_ptr<const AcceptorCredential> credential, const ChannelBinding& binding)
    : credential_(std::move(credential)), binding_(binding) {}

Acceptor::~Acceptor() {
  OM_uint32 minor = 0;
  if (context_ != GSS_C_NO_CONTEXT) gss_delete_sec_context(&minor, &context_, GSS_C_NO_BUFFER);
}

Step Acceptor::step(std::span<const uint8_t> token) {
  Bindings bindings(binding_);
  gss_buffer_desc input{token.size(), const_cast<uint8_t*>(token.data())};
  gss_buffer_desc output{};
  gss_name_t client = GSS_C_NO_NAME;
  OM_uint32 minor = 0;
  OM_uint32 flags = 0;
  const OM_uint32 major = gss_accept_sec_context(&minor, &context_, credential_->get(), &input, &bindings.value,
                                                 &client, nullptr, &output, &flags, nullptr, nullptr);
  if (major == GSS_S_COMPLETE && client != GSS_C_NO_NAME) {
    gss_buffer_desc name{};
    OM_uint32 ignored = 0;
    gss_display_name(&ignored, client, &name, nullptr);
    client_principal_.assign(static_cast<const char*>(name.value), name.length);
    gss_release_buffer(&ignored, &name);
  }
  if (client != GSS_C_NO_NAME) {
    OM_uint32 ignored = 0;
    gss_release_name(&ignored, &client);
  }
  Step step = finish(major, minor, output);
  // A token without channel bindings is accepted by GSSAPI (it has nothing to
  // compare) but could have been relayed from another TLS connection.
  if (step.state == Step::complete && (flags & GSS_C_CHANNEL_BOUND_FLAG) == 0) {
    return failed("the client's token carries no channel binding to this TLS connection");
  }
  return step;
}

Initiator::Initiator(std::shared_ptr<const InitiatorCredential> credential, const std::string& service,
                     const std::string& host, const ChannelBinding& binding)
    : credential_(std::move(credential)), binding_(binding) {
  const std::string target_text = service + "@" + host;
  gss_buffer_desc target{target_text.size(), const_cast<char*>(target_text.data())};
  OM_uint32 minor = 0;
  const OM_uint32 major = gss_import_name(&minor, &target, GSS_C_NT_HOSTBASED_SERVICE, &target_);
  if (GSS_ERROR(major)) setup_error_ = "service " + target_text + ": " + status_text(major, minor);
}

Initiator::~Initiator() {
  OM_uint32 minor = 0;
  if (context_ != GSS_C_NO_CONTEXT) gss_delete_sec_context(&minor, &context_, GSS_C_NO_BUFFER);
  if (target_ != GSS_C_NO_NAME) gss_release_name(&minor, &target_);
}

Step Initiator::step(std::span<const uint8_t> token) {
  if (!setup_error_.empty()) return failed(setup_error_);
  Bindings bindings(binding_);
  gss_buffer_desc input{token.size(), const_cast<uint8_t*>(token.data())};
  gss_buffer_desc output{};
  OM_uint32 flags = 0;
  OM_uint32 minor = 0;
  const OM_uint32 major = gss_init_sec_context(
      &minor, credential_->get(), &context_, target_, const_cast<gss_OID>(gss_mech_krb5),
      GSS_C_MUTUAL_FLAG | GSS_C_REPLAY_FLAG | GSS_C_SEQUENCE_FLAG | GSS_C_INTEG_FLAG, GSS_C_INDEFINITE, &bindings.value,
      token.empty() ? GSS_C_NO_BUFFER : &input, nullptr, &output, &flags, nullptr);
  Step step = finish(major, minor, output);
  if (step.state == Step::complete && (flags & GSS_C_MUTUAL_FLAG) == 0) {
    return failed("the gateway did not prove its identity (no mutual authentication)");
  }
  return step;
}

}  // namespace gatehouse::krb
