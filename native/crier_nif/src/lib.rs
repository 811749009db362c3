//! rustler glue between the BEAM and `crier_core`: resources, term conversion, and a
//! [`crier_core::reporter::Reporter`] over the dispatchers' relays. No protocol logic lives here.

mod atoms;
mod beam_reporter;
mod conn_nifs;
mod dirty_nifs;
mod relay;
mod relay_nifs;
mod resources;
mod runtime;
mod server_nifs;
mod terms;

use rustler::{Env, Term};

fn load(env: Env, load_info: Term) -> bool {
    env.register::<resources::ServerResource>().is_ok()
        && env.register::<resources::ConnResource>().is_ok()
        && env.register::<relay::RelayResource>().is_ok()
        && runtime::init(load_info).is_ok()
}

rustler::init!("Elixir.Crier.Native", load = load);
