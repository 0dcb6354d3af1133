#!/usr/bin/env python3
"""DNS over QUIC client for tests/quic.rs: dnspython's dns.query.quic (on
aioquic) asks NAME A of a DoQ server and prints what came back, one line:
`id=ID rcode=RCODE a=ADDR,ADDR`.

Usage: doq_client.py HOST PORT CA_FILE SERVER_NAME NAME [COUNT]
COUNT queries go over one connection (dnspython keeps it), each its own stream.
"""

import sys

import dns.message
import dns.query
import dns.quic
import dns.rcode


def main() -> None:
    host, port, ca_file, server_name, name = sys.argv[1:6]
    count = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    with dns.quic.SyncQuicManager(verify_mode=ca_file, server_name=server_name) as manager:
        connection = manager.connect(host, int(port))
        for _ in range(count):
            query = dns.message.make_query(name, "A")
            answer = dns.query.quic(
                query, host, port=int(port), timeout=10, connection=connection,
                verify=ca_file, server_hostname=server_name,
            )
            addresses = sorted(
                rdata.address for rrset in answer.answer for rdata in rrset if rrset.rdtype == 1
            )
            print(f"id={answer.id} rcode={dns.rcode.to_text(answer.rcode())} a={','.join(addresses)}")


if __name__ == "__main__":
    main()
