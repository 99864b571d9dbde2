//! The parts of the `registry` binary that other targets reach: its configuration, for
//! the cargo-fuzz target in `fuzz/`. Everything else is wiring in `main.rs`.

pub mod config;

/// The configuration parser as it meets a hostile file, for `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    /// Parses and types `text` as a configuration file with no environment.
    pub fn parse_config(text: &str) -> Result<crate::config::Config, crate::config::Error> {
        crate::config::Base::from_text(text, Path::new("fuzz.yml"))?.config(&[])
    }
}
