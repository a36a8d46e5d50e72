"""Fleet jobs: ``job list / show / retry``, and what every fan-out command shares (the selector
options, the run with its progress bar, the result table and the exit status)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import ValidationError
from .common import CONTEXT, JsonOpt, gateway
from .output import clean, console, emit_json, say, table

if TYPE_CHECKING:
    from ..api import Gateway
    from ..fleet import Selection
    from ..jobs import Job

# -- the selector options (shared by cert deploy and the tls fan-out commands) ----------------
EndpointSel = Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
    "--endpoint", help="An endpoint by name or instance ID (repeatable).", metavar="<name>")]
TypeSel = Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
    "--type", help="Every endpoint of this type (repeatable).", metavar="<type>")]
OrgSel = Annotated[Optional[str], typer.Option("--org", help="Every endpoint delegated to this organization.")]  # noqa: UP045
DeptSel = Annotated[Optional[str], typer.Option("--department", help="... and this department (with --org).")]  # noqa: UP045
AllSel = Annotated[bool, typer.Option("--all", help="Every endpoint.")]
ParallelOpt = Annotated[int, typer.Option("--parallel", help="Endpoints run at once (1: one after another).")]
MaxFailOpt = Annotated[Optional[int], typer.Option(  # noqa: UP045
    "--max_failures", "--max-failures", help="After this many failures no new endpoint starts (the rest: skipped).")]
CanaryOpt = Annotated[int, typer.Option("--canary", help="These many endpoints must succeed before the rest start.")]
NoWaitOpt = Annotated[bool, typer.Option(
    "--no_wait", "--no-wait", help="PostgreSQL inventory: queue the job for the workers and print its ID at once.")]


def check_no_wait(gw: Gateway, no_wait: bool) -> None:
    """``--no-wait`` needs workers to run the job (a PostgreSQL inventory)."""
    from ..fleet import queued

    if no_wait and not queued(gw):
        raise ValidationError("needs a PostgreSQL inventory whose workers run the job (TLSGATE_DATABASE_URL); "
                              "with SQLite the job runs in this process", option="--no_wait")


def selection(endpoint: list[str] | None, types: list[str] | None, org: str | None, department: str | None,
              all_: bool, replaces: str | None = None, positional: str | None = None) -> Selection:
    from ..fleet import Selection

    names = tuple(endpoint or ()) + ((positional,) if positional else ())
    return Selection(endpoints=names, types=tuple(types or ()), org=org, department=department, all=all_,
                     replaces=replaces)


def run_and_report(gw: Gateway, job_id: int, *, as_json: bool, parallel: int = 8, canary: int = 0,
                   max_failures: int | None = None, retry: bool = False, no_wait: bool = False) -> None:
    """Run (or retry) a job with a progress bar on a TTY, print the result, exit 1 unless every
    endpoint ended changed/unchanged. ``no_wait`` (queued jobs): print the job ID and return."""
    from .. import fleet

    if no_wait:
        check_no_wait(gw, no_wait)
        if retry:
            from .. import jobs, queue

            job = gw.job(job_id)
            ids = [i.id for i in job.items if i.state in jobs.RETRYABLE]
            queue.submit(gw, job_id, ids, max_failures=max_failures)
        if as_json:
            emit_json({"job": job_id, "state": "queued"})
        else:
            say(f"Job {job_id} queued. Follow it with: tlsgate job show {job_id}")
        return

    show_bar = sys.stdout.isatty() and not as_json
    progress = None
    bar = None
    if show_bar:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("failed {task.fields[failed]}"), TextColumn("{task.fields[current]}"),
                       TimeElapsedColumn(), console=console(), transient=True)
        total = len([i for i in gw.job(job_id).items if i.state in (("failed", "skipped", "interrupted")
                                                                       if retry else ("pending",))])
        task = bar.add_task(f"job {job_id}", total=total, failed=0, current="")
        failed = [0]

        def started(item: Any) -> None:
            bar.update(task, current=clean(item.endpoint))

        def finished(item: Any) -> None:
            if item.state not in ("changed", "unchanged"):
                failed[0] += 1
            bar.update(task, advance=1, failed=failed[0])

        progress = fleet.Progress(started=started, finished=finished)
        bar.start()
    try:
        kwargs = {"parallel": parallel, "canary": canary, "max_failures": max_failures, "progress": progress}
        job = fleet.retry(gw, job_id, **kwargs) if retry else fleet.run_job(gw, job_id, **kwargs)
    finally:
        if bar is not None:
            bar.stop()
    report(job, as_json=as_json)
    if not job.ok:
        raise typer.Exit(1)


def report(job: Job, *, as_json: bool) -> None:
    if as_json:
        emit_json(job.to_json())
        return
    if job.kind == "verify":
        rows = [[c["endpoint"], c["node"], c["port"], (c["served"] or "")[:16], c["certificate"] or "",
                 (c["not_after"] or "")[:19], c["result"]]
                for i in job.items for c in i.details.get("nodes", [])]
        table(["Endpoint", "Node", "Port", "Served SHA-256", "Certificate", "Not after", "Result"], rows)
        for i in job.items:
            if i.state == "failed" and not i.details.get("nodes"):
                say(f"{clean(i.endpoint)}: {clean(i.reason or '')}")
    elif any("certificate_id" in i.params for i in job.items):  # a renewal's job: a certificate per item
        table(["Endpoint", "Certificate", "State", "Before", "After", "Reason"],
              [[i.endpoint, _item_certificate(i.params), i.state, (i.before or "")[:16], (i.after or "")[:16],
                i.reason or ""] for i in job.items])
    else:
        table(["Endpoint", "State", "Before", "After", "Reason"],
              [[i.endpoint, i.state, (i.before or "")[:16], (i.after or "")[:16], i.reason or ""] for i in job.items])
    counts = job.counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    say(f"Job {job.id} ({job.kind}) {job.state}: {summary or 'no endpoints'}.")
    if job.state == "running":  # `job retry` refuses a running job: say how to follow it instead
        say(f"Follow it with: tlsgate job show {job.id}")
    elif not job.ok:
        say(f"Retry what failed or was skipped with: tlsgate job retry {job.id}")


def _item_certificate(params: dict[str, Any]) -> str:
    old = params.get("old_certificate_id")
    return f"{old} -> {params['certificate_id']}" if old is not None else str(params["certificate_id"])


def register(job: typer.Typer) -> None:
    @job.command("list", context_settings=CONTEXT)
    def job_list(
        limit: Annotated[Optional[int], typer.Option("--limit", help="Only the last N jobs.")] = None,  # noqa: UP045
        json: JsonOpt = False,
    ) -> None:
        """Fleet jobs (deploy, discover, restart, verify), oldest first."""
        jobs = gateway().jobs(limit)
        if json:
            emit_json([j.to_json(items=False) for j in jobs])
            return
        table(["ID", "Kind", "State", "Created", "Actor", "Endpoints", "Changed", "Unchanged", "Failed", "Skipped",
               "Interrupted"],
              [[j.id, j.kind, j.state, j.created[:19], j.actor, len(j.items), *(j.counts()[s] for s in (
                  "changed", "unchanged", "failed", "skipped", "interrupted"))] for j in jobs])

    @job.command("show", context_settings=CONTEXT)
    def job_show(
        job_id: Annotated[int, typer.Argument(help="Job ID.", metavar="ID")],
        json: JsonOpt = False,
    ) -> None:
        """One job: its parameters and every endpoint's state, reason and fingerprints."""
        j = gateway().job(job_id)
        if not json:
            say(f"Job {j.id}: {j.kind}, {j.state}, by {j.actor} on {j.gateway or '-'}, created {j.created[:19]}"
                + (f", finished {j.finished[:19]}" if j.finished else ""))
        report(j, as_json=json)

    @job.command("retry", context_settings=CONTEXT)
    def job_retry(
        job_id: Annotated[int, typer.Argument(help="Job ID.", metavar="ID")],
        parallel: ParallelOpt = 8,
        no_wait: NoWaitOpt = False,
        max_failures: MaxFailOpt = None,
        json: JsonOpt = False,
    ) -> None:
        """Re-run the endpoints of a job that failed, were skipped or were interrupted."""
        from .. import fleet

        fleet.check_run_options(parallel, 0, max_failures)
        gw = gateway()
        j = gw.job(job_id)
        if j.state == "running":
            raise ValidationError(f"job {job_id} is still running; wait for it (or for its runner to stop)")
        run_and_report(gw, job_id, as_json=json, parallel=parallel, max_failures=max_failures, retry=True,
                       no_wait=no_wait)
