// `gatehouse certs`: a dev PKI and a certificate checker that says exactly why
// a cert/key/CA set is unusable.
#include <cstdio>
#include <ctime>

#include "gatehouse/cli/args.h"
#include "commands.h"
#include "tls/pki.h"
#include "gatehouse/tls/ticket_keys.h"

namespace gatehouse::cli {
namespace {

constexpr std::string_view kUsage =
    "gatehouse certs init-ca [--dir DIR] [--name CN] [--days N] [--key-type ec|rsa] [--force]\n"
    "       gatehouse certs issue --role server|gateway|agent --name FQDN [--ca-dir DIR] [--out DIR]\n"
    "                             [--days N] [--valid-from YYYY-MM-DD] [--key-type ec|rsa] [--force]\n"
    "       gatehouse certs revoke --cert F [--ca-dir DIR] [--days N]\n"
    "       gatehouse certs crl [--ca-dir DIR] [--days N] [--valid-from YYYY-MM-DD]\n"
    "       gatehouse certs check --cert F --key F --ca F [--crl F] [--name FQDN] [--role server|gateway|agent]\n"
    "       gatehouse certs ticket-keys --file F [--keep N]";

bool parse_days(std::string_view text, uint32_t& days) {
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || value > 100'000) return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  days = static_cast<uint32_t>(value);
  return !text.empty() && value >= 1 && value <= 36'500;
}

bool parse_key_type(std::string_view text, tls::KeyType& type) {
  if (text == "ec") type = tls::KeyType::ec_p256;
  else if (text == "rsa") type = tls::KeyType::rsa_2048;
  else return false;
  return true;
}

bool parse_date(std::string_view text, time_t& when) {
  tm date{};
  const std::string copy(text);
  const char* end = strptime(copy.c_str(), "%Y-%m-%d", &date);
  if (end == nullptr || *end != '\0') return false;
  when = timegm(&date);
  return true;
}

// Prints the summary, or the error for `action`; returns the exit code.
int finish(const char* action, const std::string& error, const std::string& summary) {
  if (!error.empty()) {
    std::fprintf(stderr, "gatehouse certs %s: %s\n", action, error.c_str());
    return kExitFailure;
  }
  std::printf("%s\n", summary.c_str());
  return kExitOk;
}

// --days and --key-type, shared by init-ca and issue; "" or the usage problem.
std::string key_options(const Args& args, uint32_t& days, tls::KeyType& key_type) {
  if (auto text = args.value("--days"); text && !parse_days(*text, days)) return "--days must be 1 to 36500";
  if (auto text = args.value("--key-type"); text && !parse_key_type(*text, key_type)) return "--key-type must be ec or rsa";
  return "";
}

int run_init_ca(const Args& args) {
  tls::CaRequest request;
  request.dir = std::string(args.value("--dir").value_or("."));
  if (auto name = args.value("--name")) request.common_name = std::string(*name);
  if (const std::string problem = key_options(args, request.days, request.key_type); !problem.empty()) {
    return usage_error("gatehouse certs", problem, kUsage);
  }
  request.overwrite = args.has("--force");
  std::string summary;
  const std::string error = tls::init_ca(request, summary);
  return finish("init-ca", error, summary);
}

int run_issue(const Args& args) {
  tls::IssueRequest request;
  const auto role = args.value("--role");
  const auto name = args.value("--name");
  if (!role || !tls::parse_cert_role(std::string(*role), request.role)) {
    return usage_error("gatehouse certs", "--role server|gateway|agent is required", kUsage);
  }
  if (!name || name->empty()) return usage_error("gatehouse certs", "--name FQDN is required", kUsage);
  request.name = std::string(*name);
  request.ca_dir = std::string(args.value("--ca-dir").value_or("."));
  request.out_dir = std::string(args.value("--out").value_or("."));
  if (const std::string problem = key_options(args, request.days, request.key_type); !problem.empty()) {
    return usage_error("gatehouse certs", problem, kUsage);
  }
  if (auto from = args.value("--valid-from")) {
    time_t when = 0;
    if (!parse_date(*from, when)) return usage_error("gatehouse certs", "--valid-from must be YYYY-MM-DD", kUsage);
    request.not_before = when;
  }
  request.overwrite = args.has("--force");
  std::string summary;
  const std::string error = tls::issue(request, summary);
  return finish("issue", error, summary);
}

int run_revoke(const Args& args) {
  tls::RevokeRequest request;
  const auto cert = args.value("--cert");
  if (!cert) return usage_error("gatehouse certs", "revoke needs --cert", kUsage);
  request.cert_path = std::string(*cert);
  request.ca_dir = std::string(args.value("--ca-dir").value_or("."));
  if (auto days = args.value("--days"); days && !parse_days(*days, request.days)) {
    return usage_error("gatehouse certs", "--days must be 1 to 36500", kUsage);
  }
  std::string summary;
  const std::string error = tls::revoke(request, summary);
  return finish("revoke", error, summary);
}

// Signs the CRL again with a new nextUpdate (cron it well inside --days:
// running gateways and servers warn 7 days before it, event 30052).
int run_crl(const Args& args) {
  tls::CrlRequest request;
  request.ca_dir = std::string(args.value("--ca-dir").value_or("."));
  if (auto days = args.value("--days"); days && !parse_days(*days, request.days)) {
    return usage_error("gatehouse certs", "--days must be 1 to 36500", kUsage);
  }
  if (auto from = args.value("--valid-from")) {
    time_t when = 0;
    if (!parse_date(*from, when)) return usage_error("gatehouse certs", "--valid-from must be YYYY-MM-DD", kUsage);
    request.this_update = when;
  }
  std::string summary;
  const std::string error = tls::renew_crl(request, summary);
  return finish("crl", error, summary);
}

int run_check(const Args& args) {
  tls::CheckRequest request;
  const auto cert = args.value("--cert");
  const auto key = args.value("--key");
  const auto ca = args.value("--ca");
  if (!cert || !key || !ca) return usage_error("gatehouse certs", "check needs --cert, --key and --ca", kUsage);
  request.cert_path = std::string(*cert);
  request.key_path = std::string(*key);
  request.ca_path = std::string(*ca);
  request.crl_path = std::string(args.value("--crl").value_or(""));
  request.name = std::string(args.value("--name").value_or(""));
  if (auto role = args.value("--role")) {
    tls::CertRole parsed;
    if (!tls::parse_cert_role(std::string(*role), parsed)) return usage_error("gatehouse certs", "--role must be server, gateway or agent", kUsage);
    request.role = parsed;
  }
  const tls::CheckReport report = tls::check(request);
  for (const std::string& problem : report.problems) std::printf("%s: %s\n", request.cert_path.c_str(), problem.c_str());
  if (!report.problems.empty()) {
    std::printf("%s: unusable (%zu problem%s)\n", request.cert_path.c_str(), report.problems.size(),
                report.problems.size() == 1 ? "" : "s");
    return kExitFailure;
  }
  std::printf("%s: usable: %s\n", request.cert_path.c_str(), report.summary.c_str());
  return kExitOk;
}

// Creates or rotates a shared ticket key file (docs/auth.md: rotation).
int run_ticket_keys(const Args& args) {
  const auto file = args.value("--file");
  if (!file) return usage_error("gatehouse certs", "ticket-keys needs --file F", kUsage);
  uint32_t keep = 3;
  if (auto text = args.value("--keep")) {
    if (text->size() != 1 || (*text)[0] < '1' || static_cast<uint32_t>((*text)[0] - '0') > tls::kTicketKeysMax) {
      return usage_error("gatehouse certs", "--keep must be 1 to " + std::to_string(tls::kTicketKeysMax), kUsage);
    }
    keep = static_cast<uint32_t>((*text)[0] - '0');
  }
  std::string summary;
  const std::string error = tls::rotate_ticket_keys(std::string(*file), keep, summary);
  return finish("ticket-keys", error, summary);
}

}  // namespace

int run_certs(int argc, char** argv, int first) {
  static constexpr FlagSpec kFlags[] = {
      {"--dir", true},  {"--name", true},     {"--days", true},     {"--key-type", true}, {"--force", false},
      {"--role", true}, {"--ca-dir", true},   {"--out", true},      {"--valid-from", true}, {"--cert", true},
      {"--key", true},  {"--ca", true},       {"--crl", true},      {"--file", true},       {"--keep", true},
  };
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse certs", why, kUsage);
  if (args.positionals.size() != 1) {
    return usage_error("gatehouse certs", "one action: init-ca, issue, revoke, crl, check or ticket-keys", kUsage);
  }
  const std::string_view action = args.positionals[0];
  if (action == "init-ca") return run_init_ca(args);
  if (action == "issue") return run_issue(args);
  if (action == "revoke") return run_revoke(args);
  if (action == "crl") return run_crl(args);
  if (action == "check") return run_check(args);
  if (action == "ticket-keys") return run_ticket_keys(args);
  return usage_error("gatehouse certs", "unknown action '" + std::string(action) + "'", kUsage);
}

}  // namespace gatehouse::cli
