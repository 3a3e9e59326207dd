//! The built-in sequential models, one per file.

mod cas_register;
mod counter;
mod fifo_queue;
mod kv;
mod mutex;
mod register;
mod set;
mod unordered_queue;

pub use cas_register::CasRegister;
pub use counter::Counter;
pub use fifo_queue::FifoQueue;
pub use kv::Kv;
pub use mutex::Mutex;
pub use register::Register;
pub use set::Set;
pub use unordered_queue::UnorderedQueue;
