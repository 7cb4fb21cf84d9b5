// `gatehouse SUBCOMMAND --help` (or -h anywhere after it): every verb and
// flag of the subcommand, exit 0. The texts are the reference the man page
// (docs/gatehouse.8) summarises.
#include "help.h"

#include "build_info.h"

namespace gatehouse::cli {
namespace {

struct Help {
  std::string_view command;
  std::string_view text;
};

constexpr std::string_view kConfigFlag =
    "  -c, --config FILE     the instance's config (TOML; docs/config.md); default: the installed\n"
    "                        " GATEHOUSE_CONFIG_DIR "/ROLE.toml\n";

constexpr Help kHelp[] = {
    {"gateway",
     "usage: gatehouse gateway -c FILE\n\n"
     "Runs the gateway: accepts agents and child gateways, authenticates them, and carries\n"
     "their sessions on uplinks to the first reachable parent of [[parents]].\n\n"},
    {"server",
     "usage: gatehouse server -c FILE\n\n"
     "Runs the management-server endpoint: approvals, the durable exactly-once store,\n"
     "agent health; dials the gateways of [[gateways]] (management-server-initiated).\n\n"},
    {"agent",
     "usage: gatehouse agent -c FILE [--file F | --journal | --journal-dir DIR | --synthetic RATE [--count N]] [--follow]\n\n"
     "Runs an agent: events from stdin (the default) or a source below, through the durable\n"
     "queue to the first reachable gateway of [[gateways]].\n\n"
     "  --file F              lines of F (its position kept with the queue)\n"
     "  --journal             this host's systemd journal (its cursor kept with the queue)\n"
     "  --journal-dir DIR     the journal files in DIR instead\n"
     "  --synthetic RATE      made-up events, RATE a second\n"
     "  --count N             with --synthetic: N events, then exit once all are acknowledged\n"
     "  --follow              at the end of the input, wait for more (tail -F; rotation followed)\n"},
    {"approve",
     "usage: gatehouse approve -c FILE gateway NAME --action create|delete [--tier T]\n"
     "       gatehouse approve -c FILE agent NAME --action create|delete [--tier T | --direct] [--auth cert|kerberos]\n"
     "       gatehouse approve -c FILE list [--pending] [--json]\n\n"
     "Edits the management group's approvals (the server's registry, or the group's PostgreSQL);\n"
     "running servers apply a change within a second, live sessions included. Run it as the\n"
     "service's user.\n\n"
     "  --action create|delete  approve, or remove the approval\n"
     "  --tier T              the trust scope: a gateway's tier; an agent may come only through it\n"
     "  --direct              an agent may come only directly, not through a gateway\n"
     "  --auth cert|kerberos  the only way the agent may prove itself\n"
     "  --pending             list: only agents waiting for approval\n"
     "  --json                list: one JSON object\n"},
    {"certs",
     "usage: gatehouse certs init-ca [--dir DIR] [--name CN] [--days N] [--key-type ec|rsa] [--force]\n"
     "       gatehouse certs issue --role server|gateway|agent --name FQDN [--ca-dir DIR] [--out DIR]\n"
     "                             [--days N] [--valid-from YYYY-MM-DD] [--key-type ec|rsa] [--force]\n"
     "       gatehouse certs revoke --cert F [--ca-dir DIR] [--days N]\n"
     "       gatehouse certs crl [--ca-dir DIR] [--days N] [--valid-from YYYY-MM-DD]\n"
     "       gatehouse certs check --cert F --key F --ca F [--crl F] [--name FQDN] [--role server|gateway|agent]\n"
     "       gatehouse certs ticket-keys --file F [--keep N]\n\n"
     "A development PKI, and a checker that names every problem of a certificate/key/CA set.\n\n"
     "  --dir DIR, --ca-dir DIR  the CA's folder (default ./pki)\n"
     "  --name                the CA's CN, or the certificate's DNS name (its identity)\n"
     "  --role                the EKUs: server, gateway (server + client), agent (client)\n"
     "  --out DIR             where issue writes NAME.crt and NAME.key\n"
     "  --days N              validity (certificates, or the CRL's nextUpdate)\n"
     "  --valid-from DATE     notBefore / thisUpdate (tests of clocks and expiry)\n"
     "  --key-type ec|rsa     P-256 (default) or RSA 2048\n"
     "  --force               replace existing files\n"
     "  --cert, --key, --ca, --crl  the files to check (or the certificate to revoke)\n"
     "  --file F, --keep N    ticket-keys: add a new key to F, keeping the N newest\n"},
    {"status",
     "usage: gatehouse status -c FILE [--json] [--timeout-ms N]\n\n"
     "Asks a running instance through its admin endpoint ([admin] listen): role, uptime,\n"
     "sessions, parents and uplinks, queues or store, recent warnings and errors, certificate\n"
     "expiry. Exit 0 ready, 1 not ready, 69 it cannot be asked, 78 invalid config.\n\n"
     "  --json                the status object as JSON\n"
     "  --timeout-ms N        how long to wait for the answer (default 3000)\n"},
    {"agents",
     "usage: gatehouse agents -c FILE [--state up|down|pending] [--json]\n\n"
     "The management group's agents with their health from heartbeats: state, last heartbeat,\n"
     "tier, path (docs/server.md, \"Agent health\"). Run it as the service's user.\n\n"
     "  --state up|down|pending  only agents in that state\n"
     "  --json                an array of objects (name, state, last_heartbeat, path, tier, auth)\n"},
    {"store",
     "usage: gatehouse store -c FILE stats [--json]\n"
     "       gatehouse store -c FILE dump [--agent NAME] [--since TIME] [--cursor-file FILE] [--follow]\n"
     "       gatehouse store -c FILE agents\n"
     "       gatehouse store -c FILE verify\n"
     "       gatehouse store -c FILE salvage --to DIR\n\n"
     "Reads the server's events (the local store; a group's are in PostgreSQL).\n\n"
     "  --json                stats as JSON\n"
     "  --agent NAME          dump: one agent's events\n"
     "  --since TIME          dump: events received at or after TIME (ISO 8601)\n"
     "  --cursor-file FILE    dump: resume after the position saved in FILE, and save it\n"
     "  --follow              dump: keep printing new events until SIGINT/SIGTERM\n"
     "  --to DIR              salvage: write the readable records to a new store in DIR\n"},
    {"check-config",
     "usage: gatehouse check-config -c FILE [--role gateway|server|agent] [--dump]\n\n"
     "Validates a config as the role would at start: every key (file:line: key: reason), the\n"
     "certificate, key, CA, CRL and keytab it names, and the data folder. Exit 0 valid, 78 not.\n"
     "Without -c: the installed file of --role, or the only ROLE.toml installed.\n\n"
     "  --role ROLE           check it as this role (default: the file's)\n"
     "  --dump                print the effective config (TOML): every key, the file's value or the default\n"},
    {"proto",
     "usage: gatehouse proto decode [FILE]\n"
     "       gatehouse proto sample [--each DIR]\n\n"
     "The wire protocol (docs/protocol.md): decode a byte stream (FILE or stdin) to JSON lines,\n"
     "or write a sample stream of every frame type.\n\n"
     "  --each DIR            sample: also one file per frame in DIR (a fuzzing corpus)\n"},
    {"version",
     "usage: gatehouse version   (also gatehouse --version, -V)\n\n"
     "The versions of gatehouse and the libraries it runs on.\n"},
};

}  // namespace

std::string help_text(std::string_view command) {
  for (const Help& help : kHelp) {
    if (help.command != command) continue;
    std::string text(help.text);
    if (command != "certs" && command != "proto" && command != "version") text += "\n" + std::string(kConfigFlag);
    text += "  -h, --help            this text\n";
    return text;
  }
  return "";
}

bool asks_for_help(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") return true;
  }
  return false;
}

}  // namespace gatehouse::cli
