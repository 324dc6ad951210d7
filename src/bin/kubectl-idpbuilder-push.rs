//! The same program under the name kubectl looks for; argv[0] picks the grammar.
fn main() -> std::process::ExitCode {
    idpbuilder_push::app::main()
}
