//! The runtimes of a node behind one [`Runtime`]: native processes, and
//! containers when the node has a Docker Engine. An instance whose spec
//! names a stack runs in Docker; every other call goes to the runtime that
//! started the process (a record with a container id is Docker's).

use crate::docker::DockerRuntime;
use crate::native::NativeRuntime;
use crate::runtime::{
    Adopted, Exit, ProcRecord, Runtime, RuntimeError, StartRequest, StopSignal, Terminal,
};

pub struct Runtimes {
    pub native: NativeRuntime,
    /// The Docker runtime, or why this node has none.
    pub docker: Result<DockerRuntime, String>,
    /// Where stacks are fetched from: the master's URL and this node's token.
    pub master: (String, String),
}

impl Runtimes {
    /// `native`, plus `docker <version>` when there is an engine.
    pub fn names(&self) -> Vec<String> {
        let mut v = vec!["native".to_string()];
        if let Ok(d) = &self.docker {
            v.push(d.version.to_lowercase().replace("docker engine", "docker"));
        }
        v
    }

    pub fn stacks(&self) -> Vec<String> {
        self.docker.as_ref().map(|d| d.stacks()).unwrap_or_default()
    }

    fn of(&self, rec: &ProcRecord) -> &dyn Runtime {
        match (&rec.container, &self.docker) {
            (Some(_), Ok(d)) => d,
            _ => &self.native,
        }
    }
}

impl Runtime for Runtimes {
    fn start(&self, req: &StartRequest<'_>) -> Result<ProcRecord, RuntimeError> {
        let Some(stack) = &req.spec.stack else {
            return self.native.start(req);
        };
        let err = |why: String| RuntimeError::Start {
            instance: req.spec.id.clone(),
            why,
        };
        let d = self
            .docker
            .as_ref()
            .map_err(|why| err(format!("this node has no Docker Engine ({why})")))?;
        if !d.has_stack(stack) {
            d.fetch_stack(&self.master.0, &self.master.1, stack);
            return Err(err(format!(
                "stack {stack:?} is not on this node yet: fetching it from the master"
            )));
        }
        d.start(req)
    }

    fn poll(&self, rec: &ProcRecord) -> Option<Exit> {
        match (&rec.container, &self.docker) {
            // A container record and no engine: it is gone as far as we can tell.
            (Some(_), Err(_)) => Some(Exit::Unknown),
            _ => self.of(rec).poll(rec),
        }
    }

    fn signal(&self, rec: &ProcRecord, sig: StopSignal) -> Result<(), RuntimeError> {
        self.of(rec).signal(rec, sig)
    }

    fn notify(&self, rec: &ProcRecord, sig: &str, leader_only: bool) -> Result<(), RuntimeError> {
        self.of(rec).notify(rec, sig, leader_only)
    }

    fn hook(
        &self,
        rec: &ProcRecord,
        req: &StartRequest<'_>,
        command: &str,
    ) -> Result<(), RuntimeError> {
        self.of(rec).hook(rec, req, command)
    }

    fn kill_leftovers(&self, rec: &ProcRecord) {
        self.of(rec).kill_leftovers(rec)
    }

    fn adopt(&self) -> Adopted {
        let mut a = self.native.adopt();
        if let Ok(d) = &self.docker {
            let b = d.adopt();
            a.running.extend(b.running);
            a.exited.extend(b.exited);
        }
        a
    }

    fn forget(&self, rec: &ProcRecord) {
        self.of(rec).forget(rec)
    }

    fn limits_unavailable(&self) -> Option<String> {
        self.native.limits_unavailable()
    }

    fn accepting(&self, rec: &ProcRecord, health_path: Option<&str>) -> bool {
        self.of(rec).accepting(rec, health_path)
    }

    fn take_terminals(&self) -> Vec<(ProcRecord, Terminal)> {
        let mut v = self.native.take_terminals();
        if let Ok(d) = &self.docker {
            v.extend(d.take_terminals());
        }
        v
    }

    fn connected(&self, rec: &ProcRecord, endpoints: &[&str]) -> Option<bool> {
        self.of(rec).connected(rec, endpoints)
    }
}
