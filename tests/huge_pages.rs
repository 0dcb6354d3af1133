//! The cache's hash table sits on transparent huge pages where the kernel
//! offers them (`src/huge_pages.rs`): every forwarded miss reads one random
//! slot of it, and with 4 KiB pages that read also paid a page-table walk.

mod common;

use std::net::Ipv4Addr;

use common::*;
use hickory_proto::rr::RecordType;

const ZONE: &str = "
example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
www.example.test. 30 IN A 192.0.2.1
";

/// The kernel's transparent huge page mode, e.g. `always [madvise] never`.
fn huge_page_mode() -> Option<String> {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_caches_table_is_backed_by_huge_pages_when_the_kernel_has_them() {
    match huge_page_mode() {
        Some(mode) if !mode.contains("[never]") => {}
        mode => {
            // Nothing to ask for: the advice is ignored, and the other tests cover the cache.
            eprintln!("skipped: transparent huge pages are off here ({mode:?})");
            return;
        }
    }
    let upstream = Authority::start(ZONE);
    // 512 MiB: moka's table is 64 segments of 256 KiB, 16 MiB in all.
    let picket = PicketProcess::options()
        .upstream(upstream.addr())
        .dnssec_off()
        .flag("--cache-size", "512MiB")
        .spawn();
    wait_until_answering(picket.addr).await;
    let answer = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);

    // MADV_COLLAPSE does it at start; where it cannot (a kernel before 6.1, no
    // huge page free at once), khugepaged does it within its scan interval.
    let pid = picket.child.id();
    poll_until(
        "at least 8 MiB of the 16 MiB table on huge pages (AnonHugePages)",
        || async { proc_number(pid, "smaps_rollup", "AnonHugePages:") >= 8 * 1024 },
    )
    .await;
}
