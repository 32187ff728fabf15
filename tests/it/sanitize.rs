//! Token endpoint text on its way to callers, logs and the admin view: nothing configured or held leaks.
