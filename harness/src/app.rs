//! Carries out each command and decides its exit code. `main.rs` only parses, sets up logging and
//! calls [`execute`]; everything here is testable in-process.

use std::io::Write;
use std::time::Duration;

use crate::cli::{CheckArgs, Cli, Command, PlanArgs, RenderArgs, RunArgs};
use crate::config::{ConfigError, Plan, load_profile, plan};
use crate::exit::ExitCode;
use crate::kube::check::{Report, preflight};
use crate::kube::{KubeError, connect};
use crate::workload::{RenderError, Templates, render_external_frr, render_plan, to_multidoc_yaml};

/// Why a command failed, with the exit code each cause maps to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("preflight found blocking problems:\n{0}")]
    Preflight(Report),
    #[error("the Kubernetes API is unreachable:\n{0}")]
    Unreachable(Report),
    #[error(
        "the measuring run is not available yet: preflight passed, but orchestration of the \
             measurements arrives with the run issue; use `render` to see what would be created"
    )]
    RunNotAvailable,
    #[error("cannot write output")]
    Output(#[source] std::io::Error),
}

impl AppError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AppError::Config(_) | AppError::Render(_) => ExitCode::InvalidInput,
            AppError::Kube(_) | AppError::Preflight(_) | AppError::Unreachable(_) => {
                ExitCode::EnvironmentUnavailable
            }
            AppError::RunNotAvailable | AppError::Output(_) => ExitCode::Internal,
        }
    }
}

/// Validates the plan arguments: profile + overrides → plan. Contacts nothing.
pub fn plan_from_args(args: &PlanArgs) -> Result<Plan, AppError> {
    let profile = load_profile(&args.profile)?;
    Ok(plan(&profile, &args.overrides())?)
}

/// Runs the command the CLI selected, writing normal output to `out`.
pub async fn execute(cli: Cli, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    match cli.command {
        None => run(cli.run, out).await,
        Some(Command::Run(args)) => run(args, out).await,
        Some(Command::Render(args)) => render(&args, out),
        Some(Command::FrrConfig(args)) => frr_config(&args, out),
        Some(Command::Check(args)) => check(&args, out).await,
    }
}

fn render(args: &RenderArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    let plan = plan_from_args(&args.plan)?;
    let templates = match &args.workload_dir {
        Some(dir) => Templates::from_dir(dir)?,
        None => Templates::builtin()?,
    };
    let manifests = render_plan(&plan, &templates)?;
    out.write_all(to_multidoc_yaml(&plan, &manifests).as_bytes())
        .map_err(AppError::Output)?;
    Ok(ExitCode::Ok)
}

fn frr_config(args: &PlanArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    let plan = plan_from_args(args)?;
    let text = render_external_frr(&plan, &Templates::builtin()?)?;
    out.write_all(text.as_bytes()).map_err(AppError::Output)?;
    Ok(ExitCode::Ok)
}

async fn check(args: &CheckArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    let plan = plan_from_args(&args.plan)?;
    let timeout = Duration::from_secs(args.connect_timeout.max(1));
    let report = preflight_plan(&plan, timeout, args.probe_peer.then_some(timeout)).await?;
    write!(out, "{report}").map_err(AppError::Output)?;
    Ok(ExitCode::Ok)
}

/// Connects and runs the preflight; unreachable API and blocking findings are errors.
async fn preflight_plan(
    plan: &Plan,
    timeout: Duration,
    probe_peer: Option<Duration>,
) -> Result<Report, AppError> {
    let cluster = connect(plan.kubeconfig.as_deref(), plan.context.as_deref(), timeout).await?;
    let report = preflight(&cluster, plan, probe_peer).await;
    if !report.reachable() {
        return Err(AppError::Unreachable(report));
    }
    if report.blocking() {
        return Err(AppError::Preflight(report));
    }
    Ok(report)
}

async fn run(args: RunArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    let plan = plan_from_args(&args.plan)?;
    let report = preflight_plan(&plan, Duration::from_secs(10), None).await?;
    write!(out, "{report}").map_err(AppError::Output)?;
    Err(AppError::RunNotAvailable)
}
