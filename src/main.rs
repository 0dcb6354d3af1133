use clap::Parser;

// The C library's malloc, or mimalloc with `--features mimalloc` (off by default: less CPU per
// forwarded miss, but a higher p99 on cache hits; benches/README.md, *Fifth round*, has what it
// changes per query and in memory). Either way inside `huge_pages::Recording`, which notes the
// blocks of the cache's table so that they can be put on huge pages.
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
