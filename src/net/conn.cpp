// Out of line: the record owns a TLS session, a decoder and a Kerberos
// acceptor, whose types the public header only names.
#include "gatehouse/net/conn.h"

#include "gatehouse/proto/codec.h"
#include "krb/gss.h"
#include "tls/session.h"

namespace gatehouse::net {

Conn::Conn() = default;
Conn::~Conn() = default;
Conn::Conn(Conn&&) noexcept = default;
Conn& Conn::operator=(Conn&&) noexcept = default;

}  // namespace gatehouse::net
