use clap::Parser;

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
