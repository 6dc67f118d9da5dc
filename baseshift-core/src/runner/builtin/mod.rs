//! Built-in runners: `noop`, `delay`, `manual`, `workflow`, `shell`, `http_request`,
//! `serverless`.

mod delay;
mod fields;
#[cfg(feature = "http-runner")]
mod http;
mod manual;
mod noop;
mod settings;
mod shell;
mod workflow;

pub use delay::DelayRunner;
#[cfg(feature = "http-runner")]
pub use http::{HostBreakerSettings, HttpRunner, HttpRunnerConfig, ServerlessRunner};
pub use manual::ManualRunner;
pub use noop::NoopRunner;
pub use shell::{ShellRunner, ShellRunnerConfig};
pub use workflow::WorkflowRunner;
