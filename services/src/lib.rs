//! zeroku-services: backing services and discovery.
//!
//! It will provision PostgreSQL/Redis add-ons (injecting `DATABASE_URL` and
//! `REDIS_URL`), take backups, and run the discovery registry where instances
//! provide and require named services. It must not start app processes: that
//! is the worker's job. Not built yet; see the project's issues.
#![forbid(unsafe_code)]
