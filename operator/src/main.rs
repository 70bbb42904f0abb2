use gatehouse_operator::cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
