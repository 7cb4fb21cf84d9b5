// Stable event IDs (docs/events.md is the catalogue users read). SCOM's
// numbers are kept where the meaning matches; gatehouse's own are 30000+.
// Never renumber: operators alert on these.
#pragma once

#include <cstdint>

namespace gatehouse::log {

enum class EventId : uint32_t {
  queue_overflow_dropped = 4506,      // agent: send queue full, oldest events dropped (server: the declared gap)
  peer_not_approved = 20000,          // server: unapproved gateway or agent refused
  certificate_invalid = 20051,        // certificate unusable (why in the message)
  certificate_loaded = 20053,         // certificate loaded (subject, expiry)
  agent_not_approved = 20070,         // agent: the parent says this agent is not approved
  parent_connect_failed = 21006,      // could not connect to a parent
  mutual_auth_failed = 21007,         // TLS or Kerberos mutual authentication failed
  no_parent_available = 21016,        // every parent in the failover list is down
  process_started = 30001,
  process_stopping = 30002,
  config_invalid = 30003,
  forbidden_library_loaded = 30004,   // OpenSSL 3 mapped beside BoringSSL
  config_reloaded = 30005,            // SIGHUP: the config was re-read (what changed live, what takes a restart)
  protocol_violation = 30010,         // a peer sent a malformed or out-of-bounds frame
  connection_table_full = 30020,      // a shard's direct-descriptor table is full
  runtime_unavailable = 30021,        // io_uring cannot run here (disabled, memlock, fd limit)
  shard_priority_refused = 30022,     // [runtime] shard_nice could not be applied (no CAP_SYS_NICE)
  handshake_queue_full = 30030,       // a new connection was shed: the auth queue is full
  handshake_timeout = 30031,          // a client did not finish its handshake in time
  session_idle_timeout = 30032,       // an authenticated child sent nothing (not even heartbeats) for too long
  session_opened = 30033,             // gateway, server: a child's session is established (HELLO_OK sent)
  session_closed = 30034,             // gateway, server: a child's session ended (duration, frames and bytes)
  store_tail_truncated = 30040,       // server: a torn last record (crash mid-write) was cut off at start
  store_write_failed = 30041,         // server: the store cannot write or fsync; it stops without acknowledging
  store_disk_full = 30046,            // server: the store's disk is full: no ACK until it has room (no stop)
  store_disk_room = 30047,            // server: the store writes again after its disk was full
  store_damaged = 30048,              // server: the store cannot be opened (damage, not a crash tail): no start
  queue_write_failed = 30042,         // agent: the disk queue cannot write or fsync; input stops
  input_line_refused = 30043,         // agent: an input line longer than an event may be, refused (not cut)
  queue_input_paused = 30044,         // agent: input stops: the queue is full (block) or its file system is
  queue_input_resumed = 30045,        // agent: input goes on after a pause (how long it lasted)
  input_position = 30049,             // agent: where a file input resumes, or why it starts over (rotated, truncated, replaced)
  parent_connected = 30050,           // agent, gateway: a session with a parent is up
  gateway_not_approved = 30051,       // gateway: the parent refused its uplink (not approved)
  crl_expiring = 30052,               // a CRL in use reaches its nextUpdate within 7 days (or passed it)
  parent_failback = 30053,
  gateway_dialled = 30054,            // server: connected to a gateway it dials ([[gateways]]: management-server-initiated)
  gateway_dial_failed = 30055,        // server: cannot connect to a gateway it dials
  parent_dial_refused = 30056,        // gateway: a connection that said it was a parent's dial-in was refused            // agent, gateway: the first parent takes connections again: going back to it
  new_agents_throttled = 30060,       // server: a gateway uplink brought new agents faster than allowed
  agent_session_replaced = 30061,     // server: an agent's new session replaced its older one
  chain_hop_refused = 30062,          // gateway: a chained gateway's OPEN named a path it is not on
  data_out_of_order = 30063,          // server: an agent's DATA was not the next seq (a jump or a rewind)
  approval_revoked = 30064,           // server: a live session ended because its approval was deleted
  agent_incarnation_new = 30065,      // server: an agent's queue began a new incarnation (a restart, reinstall or restore)
  database_unavailable = 30070,       // server: the group's PostgreSQL cannot be reached or failed a commit: no ACK meanwhile
  database_available = 30071,         // server: PostgreSQL commits again; acknowledgements resume
  database_migrated = 30072,          // server: the group's schema was created or upgraded (to which version)
  database_retention = 30073,         // server: a day of events older than [store] retention_days was dropped
  store_index = 30074,                // server: the local store's index cannot be used (rebuilt) or written
  store_retention = 30075,
  registry_write_failed = 30076,      // server: the registry (inventory, heartbeats) cannot be written            // server: the local store removed old segments (retention_days / retention_max_bytes)
  admin_unavailable = 30080,          // the admin endpoint cannot listen ([admin] listen): the role does not start
  admin_request_refused = 30081,
  admin_request = 30082,              // debug: the admin endpoint answered a request (path, status)      // the admin endpoint refused a request (malformed, too large, too slow)
  invariant_broken = 30090,
  heartbeat_failed = 30100,           // server: an agent (or gateway) missed heartbeats_missed_max heartbeats: down (SCOM's heartbeat failure)
  heartbeat_restored = 30101,         // server: a down agent (or gateway) is heard again: up           // a bug: an internal invariant failed; the process aborts
  log_lines_dropped = 30091,          // the log buffer was full: lines lost (how many)
};

const char* event_name(EventId id);

}  // namespace gatehouse::log
