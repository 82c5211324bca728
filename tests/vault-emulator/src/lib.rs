//! A HashiCorp Vault HTTP API emulator for tests.
