//! `idpbuilder-push`: see the library for everything.
fn main() -> std::process::ExitCode {
    idpbuilder_push::app::main()
}
