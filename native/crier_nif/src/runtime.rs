//! The one process-wide tokio runtime, built when the NIF library loads.

use once_cell::sync::OnceCell;
use rustler::Term;
use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceCell<Runtime> = OnceCell::new();

/// Builds the runtime from the load info (`%{worker_threads: n}`; 0 or absent means one per
/// online core). Fallible, so a bad build fails the load instead of panicking later.
pub fn init(load_info: Term) -> std::io::Result<()> {
    let workers = load_info
        .map_get(rustler::types::atom::Atom::from_str(load_info.get_env(), "worker_threads").ok())
        .ok()
        .and_then(|term| term.decode::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    RUNTIME
        .get_or_try_init(|| {
            Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("crier-io")
                .enable_all()
                .build()
        })
        .map(|_| ())
}

/// The runtime; loading fails without one, so it always exists once NIFs can be called.
pub fn handle() -> &'static tokio::runtime::Handle {
    RUNTIME
        .get()
        .expect("the runtime is built in load")
        .handle()
}
