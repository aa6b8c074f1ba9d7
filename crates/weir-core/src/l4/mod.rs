//! Layer-4 listeners: TCP forwarding (UDP lands here too).

pub mod forward;
pub mod tcp;
