use clap::Parser;

/// mimalloc instead of the C library's malloc with `--features mimalloc` (off by default: less
/// CPU per forwarded miss, but a higher p99 on cache hits). See benches/README.md, *Fifth
/// round*, for what it changes per query and in memory.
/// Either way wrapped in `huge_pages::Recording`, which notes the cache table's blocks so that
/// they can be put on huge pages.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: picket::huge_pages::Recording<mimalloc::MiMalloc> =
    picket::huge_pages::Recording(mimalloc::MiMalloc);

#[cfg(not(feature = "mimalloc"))]
#[global_allocator]
static GLOBAL: picket::huge_pages::Recording<std::alloc::System> =
    picket::huge_pages::Recording(std::alloc::System);

fn main() {
    let cli = picket::cli::Cli::parse();
    match picket::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("picket: {e:#}");
            std::process::exit(2);
        }
    }
}
