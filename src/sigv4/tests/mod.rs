//! The module's unit tests: AWS's test suite vectors, the date, canonicalisation edge cases,
//! `sign` itself, and that no secret leaks into text.

mod canonical;
mod secrecy;
mod sign;
mod time;
mod vectors;
