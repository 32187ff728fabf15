//! The command line for operators: health probes, check without secrets, token hints, file watching.
