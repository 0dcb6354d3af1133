#!/usr/bin/env python3
"""DoH over HTTP/3 client for tests/quic.rs: dnspython's dns.query.https
over HTTP/3 (on aioquic) asks NAME A and prints, one line:
`id=ID rcode=RCODE a=ADDR,ADDR`.

Usage: doh3_client.py URL CA_FILE NAME [get|post]
"""

import sys

import dns.message
import dns.query
import dns.rcode


def main() -> None:
    url, ca_file, name = sys.argv[1:4]
    method = sys.argv[4] if len(sys.argv) > 4 else "post"
    query = dns.message.make_query(name, "A")
    answer = dns.query.https(
        query, url, timeout=10, verify=ca_file, post=(method == "post"),
        # dnspython 2.6 spelled it h3=True; 2.7 asks for the version.
        http_version=dns.query.HTTPVersion.H3,
    )
    addresses = sorted(
        rdata.address for rrset in answer.answer for rdata in rrset if rrset.rdtype == 1
    )
    print(f"id={answer.id} rcode={dns.rcode.to_text(answer.rcode())} a={','.join(addresses)}")


if __name__ == "__main__":
    main()
