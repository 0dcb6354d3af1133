use clap::Parser;

// mimalloc by default, or the C library's malloc in a build with `--no-default-features`
// (mimalloc: 0.93x the CPU per forwarded miss and 0.95x per cache hit, with p99 latency no
// different; benches/README.md, *Fourteenth round*, and *Fifth round* for memory). Either way
// inside `huge_pages::Recording`, which notes the blocks of the cache's table so that they can
// be put on huge pages.
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
