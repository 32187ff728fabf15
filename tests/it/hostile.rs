//! Hostile callers at the connection level: idle HTTP/2 connections, stream floods, file descriptor exhaustion.
