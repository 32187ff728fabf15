//! Request-level hardening: methods, upstream slots, idle bodies, admin access, rejection storms.
