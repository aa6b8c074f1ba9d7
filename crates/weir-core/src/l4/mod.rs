//! Layer-4 listeners: TCP forwarding (UDP lands here too).

mod direction;
pub mod forward;
pub mod tcp;
