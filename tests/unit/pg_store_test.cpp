// The group's store on a real PostgreSQL 15 (tests/pg/postgres): two servers
// on one database store each event once, whoever gets it and however often;
// acknowledgements wait for COMMIT; a database that goes away is waited out.
#include <doctest/doctest.h>

#include <filesystem>
#include <thread>

#include "gatehouse/config/config_types.h"
#include "gatehouse/server/registry.h"
#include "gatehouse/store/pg_store.h"
#include "store/pg.h"
#include "store_support.h"
#include "test_pg.h"
#include "test_pki.h"

using namespace gatehouse;
using namespace std::chrono_literals;
using testing::batch_of;
using testing::kIncarnation;

namespace {

testing::Postgres& postgres() {
  static testing::Postgres instance;
  return instance;
}

struct Server : testing::StoreWriter {
  Server(const std::string& dsn, const std::string& name) {
    std::string why;
    auto opened = store::PgStore::open(dsn, name, {}, why);
    REQUIRE_MESSAGE(opened != nullptr, why);
    pg = opened.get();
    start(std::move(opened));
  }
  store::PgStore* pg = nullptr;
};

// One value of a query as text.
std::string query(const std::string& dsn, const std::string& sql) {
  std::string why;
  auto conn = pg::Connection::connect(dsn, why);
  REQUIRE_MESSAGE(conn != nullptr, why);
  pg::Result result;
  REQUIRE_MESSAGE(conn->exec(sql, why, &result), why);
  REQUIRE(result.rows.size() == 1);
  return result.rows[0][0].value_or("NULL");
}

// A login role with a password (TCP connections ask SCRAM-SHA-256).
std::string writer_dsn_tcp() {
  static const bool created = postgres().psql("CREATE ROLE writer LOGIN PASSWORD 's3cret pass'") == 0;
  REQUIRE(created);
  return "host=127.0.0.1 port=" + postgres().port() + " dbname=gatehouse user=writer";
}

}  // namespace

TEST_CASE("pg store: two servers on one database store each event once; the second resumes where the group is") {
  const std::string dsn = postgres().fresh_database();
  Server ms1(dsn, "ms1.example.test");
  Server ms2(dsn, "ms2.example.test");
  ms1.submit(batch_of("web01", 1, 100, kIncarnation, "gw1.example.test"));
  ms1.wait();
  CHECK(ms1.acked_of("web01") == 100);
  // ms2 learns the group's progress within its refresh interval.
  REQUIRE(testing::wait_until([&] { return ms2.pg->resume_point("web01", kIncarnation).durable_seq == 100; }, 5s));
  // A failover that resends 50..150 (the ACK of 50..100 was lost on the way).
  ms2.submit(batch_of("web01", 50, 101, kIncarnation, "gw1.example.test"));
  ms2.wait();
  CHECK(ms2.acked_of("web01") == 150);
  CHECK(ms2.pg->stats().duplicates_dropped == 51);
  CHECK(query(dsn, "SELECT count(*) FROM gatehouse.events") == "150");
  CHECK(query(dsn, "SELECT count(*) FROM (SELECT agent, incarnation, seq FROM gatehouse.events "
                   "GROUP BY 1, 2, 3 HAVING count(*) > 1) twice") == "0");
  CHECK(query(dsn, "SELECT count(*) FROM gatehouse.events WHERE server = 'ms2.example.test'") == "50");
  CHECK(query(dsn, "SELECT string_agg(DISTINCT path, ',') FROM gatehouse.events") == "gw1.example.test");
  CHECK(query(dsn, "SELECT convert_from(payload, 'UTF8') FROM gatehouse.events WHERE seq = 42") == "web01 event 42");
  CHECK(query(dsn, "SELECT duplicates_dropped FROM gatehouse.server_counters WHERE server = 'ms2.example.test'") == "51");
  CHECK(query(dsn, "SELECT count(*) FROM gatehouse.events WHERE received_at > now() - interval '1 minute'") == "150");
}

TEST_CASE("pg store: two servers given the same events at once store them once (the database decides)") {
  const std::string dsn = postgres().fresh_database();
  Server ms1(dsn, "ms1.example.test");
  Server ms2(dsn, "ms2.example.test");
  std::thread other([&] {
    for (uint64_t i = 0; i < 40; ++i) ms2.submit(batch_of("web0" + std::to_string(i % 4), 1 + (i / 4) * 25, 25));
  });
  for (uint64_t i = 0; i < 40; ++i) ms1.submit(batch_of("web0" + std::to_string(i % 4), 1 + (i / 4) * 25, 25));
  other.join();
  ms1.wait(30s);
  ms2.wait(30s);
  for (const char* agent : {"web00", "web01", "web02", "web03"}) {
    CHECK(std::max(ms1.acked_of(agent), ms2.acked_of(agent)) == 250);
  }
  CHECK(query(dsn, "SELECT count(*) FROM gatehouse.events") == "1000");
  CHECK(query(dsn, "SELECT count(DISTINCT (agent, seq)) FROM gatehouse.events") == "1000");
  CHECK(ms1.pg->stats().duplicates_dropped + ms2.pg->stats().duplicates_dropped == 1000);
}

TEST_CASE("pg store: a declared gap is stored as one row; a gap the group already holds is a duplicate") {
  const std::string dsn = postgres().fresh_database();
  Server ms1(dsn, "ms1.example.test");
  ms1.submit(batch_of("web01", 1, 5));
  store::Batch* gap = batch_of("web01", 11, 1);
  gap->entries.insert(gap->entries.begin(), {10, 0, "web01", kIncarnation, 10, 6, 0, 0, 0, ""});
  ms1.submit(gap);
  ms1.wait();
  ms1.submit(batch_of("web01", 11, 1));  // resent: a duplicate
  store::Batch* old_gap = batch_of("web01", 1, 0);
  old_gap->entries.push_back({10, 0, "web01", kIncarnation, 10, 6, 0, 0, 0, ""});
  ms1.submit(old_gap);  // a stale view's gap over stored seqs: a duplicate too
  ms1.wait();
  CHECK(ms1.acked_of("web01") == 11);
  CHECK(query(dsn, "SELECT count(*) FROM gatehouse.events") == "7");
  CHECK(query(dsn, "SELECT gap_first_seq || '-' || seq FROM gatehouse.events WHERE payload IS NULL") == "6-10");
  CHECK(ms1.pg->stats().duplicates_dropped == 2);
}

TEST_CASE("pg store: nothing is acknowledged while the database is down; all of it after, once") {
  testing::Postgres own;  // this test stops its database
  const std::string dsn = own.fresh_database();
  Server ms1(dsn, "ms1.example.test");
  ms1.submit(batch_of("web01", 1, 10));
  ms1.wait();
  REQUIRE(own.stop() == 0);
  ms1.submit(batch_of("web01", 11, 10));
  std::this_thread::sleep_for(1500ms);
  CHECK(ms1.delivered.load() == 1);  // not acknowledged: not committed
  REQUIRE(own.restart() == 0);
  ms1.wait(30s);
  CHECK(ms1.acked_of("web01") == 20);
  CHECK(query(dsn, "SELECT count(*) FROM gatehouse.events") == "20");
}

TEST_CASE("pg store: the schema is made once and recorded; a newer one than we know is refused") {
  const std::string dsn = postgres().fresh_database();
  { Server first(dsn, "ms1.example.test"); }
  { Server second(dsn, "ms2.example.test"); }
  CHECK(query(dsn, "SELECT count(*) FROM gatehouse.schema_migrations") == std::to_string(pg::schema_version_latest()));
  REQUIRE(postgres().psql("INSERT INTO gatehouse.schema_migrations (version, description) VALUES (999, 'future')",
                          dsn.substr(dsn.rfind('=') + 1)) == 0);
  std::string why;
  CHECK(store::PgStore::open(dsn, "ms1.example.test", {}, why) == nullptr);
  CHECK_MESSAGE(why.find("newer than this gatehouse knows") != std::string::npos, why);
}

TEST_CASE("pg client: SCRAM-SHA-256 over TCP with the right password, refused with a wrong one or none") {
  const std::string tcp = writer_dsn_tcp();
  std::string why;
  CHECK_MESSAGE(pg::Connection::connect(tcp + " password='s3cret pass'", why) != nullptr, why);
  CHECK(pg::Connection::connect(tcp + " password=wrong", why) == nullptr);
  CHECK_MESSAGE(why.find("28P01") != std::string::npos, why);  // invalid_password
  CHECK(pg::Connection::connect(tcp, why) == nullptr);
  CHECK_MESSAGE(why.find("has none") != std::string::npos, why);
  CHECK(pg::Connection::connect(tcp + " password='s3cret pass' sslmode=require", why) == nullptr);
  CHECK_MESSAGE(why.find("the server does not do TLS (sslmode require needs it)") != std::string::npos, why);
  CHECK(pg::Connection::connect(tcp + " sslmode=verify-full", why) == nullptr);
  CHECK_MESSAGE(why.find("need sslrootcert") != std::string::npos, why);
  CHECK(pg::Connection::connect(tcp + " sslmode=sometimes", why) == nullptr);
  CHECK_MESSAGE(why.find("sslmode sometimes (want disable, allow, prefer") != std::string::npos, why);
}

TEST_CASE("pg client: TLS as sslmode asks; refused for another CA, another name, or a client that may not skip it") {
  static testing::Postgres secured;
  const tls::Pki& dev = tls::pki();
  const std::string certs = dev.path("pg-server");
  std::filesystem::create_directories(certs);
  std::string summary;
  REQUIRE(tls::issue({.ca_dir = dev.dir.string(), .out_dir = certs, .role = tls::CertRole::server, .name = "localhost"},
                     summary) == "");
  REQUIRE(secured.enable_tls(certs + "/localhost.crt", certs + "/localhost.key") == 0);
  REQUIRE(secured.psql("CREATE ROLE writer LOGIN PASSWORD 's3cret pass'") == 0);
  const std::string tcp = " port=" + secured.port() + " dbname=gatehouse user=writer password='s3cret pass'";
  const std::string ca = " sslrootcert=" + dev.path("ca.crt");
  std::string why;
  auto conn = pg::Connection::connect("host=localhost sslmode=verify-full" + ca + tcp, why);
  REQUIRE_MESSAGE(conn != nullptr, why);
  pg::Result encrypted;
  REQUIRE(conn->exec("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", why, &encrypted));
  CHECK(encrypted.text(0, 0) == "t");
  CHECK(encrypted.text(0, 1).starts_with("TLSv1."));
  // The group's store over it: a commit, acknowledged after COMMIT.
  REQUIRE(secured.psql("GRANT ALL ON DATABASE gatehouse TO writer") == 0);
  REQUIRE(secured.psql("GRANT ALL ON SCHEMA public TO writer") == 0);
  {
    Server ms1("host=localhost sslmode=verify-full" + ca + tcp, "ms1.example.test");
    ms1.submit(batch_of("web01", 1, 50));
    ms1.wait();
    CHECK(ms1.acked_of("web01") == 50);
  }
  CHECK(pg::Connection::connect("host=localhost sslmode=verify-full sslrootcert=" + dev.path("partner/ca.crt") + tcp,
                                why) == nullptr);
  CHECK_MESSAGE(why.find("the server's certificate: unable to get local issuer certificate") != std::string::npos, why);
  CHECK(pg::Connection::connect("host=127.0.0.1 sslmode=verify-full" + ca + tcp, why) == nullptr);  // named localhost
  CHECK_MESSAGE(why.find("the server's certificate: ") != std::string::npos, why);
  CHECK_MESSAGE(pg::Connection::connect("host=127.0.0.1 sslmode=verify-ca" + ca + tcp, why) != nullptr, why);
  CHECK_MESSAGE(pg::Connection::connect("host=127.0.0.1 sslmode=require" + tcp, why) != nullptr, why);
}

TEST_CASE("pg client: target_session_attrs=read-write skips a host that is down and says why for each") {
  writer_dsn_tcp();
  const std::string both = "host=127.0.0.1,127.0.0.1 port=1," + postgres().port() +
                           " dbname=gatehouse user=writer password='s3cret pass' target_session_attrs=read-write";
  std::string why;
  CHECK_MESSAGE(pg::Connection::connect(both, why) != nullptr, why);
  CHECK(pg::Connection::connect("host=127.0.0.1 port=1 user=x", why) == nullptr);
  CHECK_MESSAGE(why.find("127.0.0.1:1") != std::string::npos, why);
}

TEST_CASE("pg registry: an approval made through one server is in force on the other within a second, and its deletion") {
  const std::string dsn = postgres().fresh_database();
  std::string why;
  auto ms1 = server::Registry::open_postgresql(dsn, why);
  REQUIRE_MESSAGE(ms1 != nullptr, why);
  auto ms2 = server::Registry::open_postgresql(dsn, why);
  REQUIRE_MESSAGE(ms2 != nullptr, why);
  ms2->watch([] { return uint32_t{60'000}; });  // a poll that never comes: only the NOTIFY can tell it in time
  auto operator_cli = server::Registry::open_postgresql(dsn, why);  // `gatehouse approve` against ms1's config
  REQUIRE_MESSAGE(operator_cli != nullptr, why);
  const auto approved = std::chrono::steady_clock::now();
  REQUIRE(operator_cli->set_gateway("GW1.example.test", true, "dmz") == "");
  REQUIRE(operator_cli->set_agent("web01.example.test", true) == "");
  REQUIRE(testing::wait_until([&] {
    const auto approvals = ms2->approvals();
    return approvals->gateways.contains("gw1.example.test") && approvals->agents.contains("web01.example.test");
  }, 5s));
  CHECK(std::chrono::steady_clock::now() - approved < 1s);
  CHECK(ms2->approvals()->gateways.at("gw1.example.test") == "dmz");
  const uint64_t version = ms2->approvals_version();
  REQUIRE(operator_cli->set_agent("web01.example.test", false) == "");
  REQUIRE(testing::wait_until([&] { return !ms2->approvals()->agents.contains("web01.example.test"); }, 5s));
  CHECK(ms2->approvals_version() > version);
  // The inventory a server notes is the group's: listed from any server's config.
  ms1->watch([] { return uint32_t{250}; });
  ms1->note_seen("web02.example.test", "gw1.example.test", {"dmz", "cert"}, config::AgentApproval::review);
  REQUIRE(testing::wait_until([&] { return operator_cli->agents(true).size() == 1; }, 5s));
  CHECK(operator_cli->agents(true)[0].via == "gw1.example.test");
}

TEST_CASE("pg store: days past retention_days are dropped whole, today's stay") {
  const std::string dsn = postgres().fresh_database();
  const std::string database = dsn.substr(dsn.rfind('=') + 1);
  {
    Server first(dsn, "ms1.example.test");  // makes the schema
  }
  REQUIRE(postgres().psql("CREATE TABLE gatehouse.events_p20200101 PARTITION OF gatehouse.events FOR VALUES FROM "
                          "('2020-01-01 00:00:00+00') TO ('2020-01-02 00:00:00+00'); INSERT INTO gatehouse.events "
                          "(received_at, agent, incarnation, seq, path, server, payload) VALUES ('2020-01-01 12:00+00', "
                          "'old01', 1, 1, '', 'ms1.example.test', 'x')",
                          database) == 0);
  std::string why;
  auto opened = store::PgStore::open(dsn, "ms1.example.test", {.retention_days = 30}, why);
  REQUIRE_MESSAGE(opened != nullptr, why);
  testing::StoreWriter server;
  server.start(std::move(opened));
  server.submit(batch_of("web01", 1, 10));
  server.wait();
  REQUIRE(testing::wait_until(
      [&] { return query(dsn, "SELECT count(*) FROM pg_class WHERE relname = 'events_p20200101'") == "0"; }, 5s));
  CHECK(query(dsn, "SELECT count(*) FROM gatehouse.events") == "10");
  CHECK(query(dsn, "SELECT count(*) FROM gatehouse.events WHERE agent = 'old01'") == "0");
}
