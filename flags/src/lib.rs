//! Gatehouse flags: the one evaluation of a flag, used by the server (`flag.evaluate`) and, with
//! the `client` feature, in-process by any Rust service ([`client::FlagClient`]).
//!
//! - [`bucket`]: MurmurHash3 x86_32 and the two bucketing modes (formulas there).
//! - [`eval`]: precedence, strategies, include/exclude, rule; [`evaluate`].
//! - `native`: a rule of the common shapes (`plan == "pro"`, `seats >= 10`, `region in [...]`,
//!   `!`/`&&`/`||`) compiled to native code that answers exactly as CEL does.
//! - [`env`]: the `GATEHOUSE_EMERGENCY_STOP` override.
//! - `client` (feature `client`): a local copy of every flag, fed by the events.
//!
//! The flag's state and its fold ([`gatehouse_events::flag::FlagState`]) are the protocol
//! crate's, so the server, its read model and the client fold events identically.
pub mod bucket;
#[cfg(feature = "client")]
pub mod client;
pub mod env;
pub mod eval;
mod native;

pub use env::EmergencyOverride;
pub use eval::{evaluate, evaluate_with, CompiledFlag, Switches};
pub use gatehouse_events::flag::{Evaluation, FlagState, Reason};
