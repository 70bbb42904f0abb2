use gatehouse_operator::cli;

// Rendering and the watch caches allocate many small JSON nodes; mimalloc roughly halves
// the allocator's share of render time compared with glibc malloc (see `make bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
