use clap::Parser;

/// mimalloc instead of the C library's malloc (the `mimalloc` cargo feature, on by default;
/// `--no-default-features` builds with the system allocator). See benches/README.md, *Fifth
/// round*, for what it changes per query and in memory.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
