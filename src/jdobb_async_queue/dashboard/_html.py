"""Server-rendered pages. Every value that comes from the queue (ids, types, payloads, errors,
messages, worker fields) goes through :func:`esc`; the pages' script reads data attributes and
writes with ``textContent`` only."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from .._models import Job, JobStatus
from ._data import STATUSES

__all__ = ["Page", "esc", "job_href"]

#: Statuses a job can be cancelled from, and retried from.
CANCELLABLE = frozenset({JobStatus.PENDING, JobStatus.PROCESSING})
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


def esc(value: object) -> str:
    """HTML-escape ``value`` (quotes too: safe in text and in quoted attributes)."""
    return escape("" if value is None else str(value), quote=True)


def job_href(base: str, job_id: str) -> str:
    return f"{base}/jobs/{quote(job_id, safe='')}"


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return esc(value.strftime("%Y-%m-%d %H:%M:%S") + "Z")


def pretty(value: object) -> str:
    return esc(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str))


def plain_cell(value: object) -> str:
    if isinstance(value, list):
        return esc(", ".join(str(v) for v in value)) or "—"
    if isinstance(value, dict):
        return esc(json.dumps(value, sort_keys=True, default=str))
    return "—" if value is None else esc(value)


@dataclass
class Page:
    """What every page shares: where the app is mounted, its title, and what the user may do."""

    base: str  # where the app is mounted, HTML-escaped already
    title: str
    read_only: bool
    needs_login: bool  # a token is set and this request did not present it
    has_token: bool
    refresh_ms: int

    # -- the frame ------------------------------------------------------------------------

    def frame(self, heading: str, body: str, *, active: str, data: Mapping[str, str] = {}) -> str:
        attrs = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in data.items())
        nav = "".join(
            f'<a href="{self.base}{path}"{" aria-current=page" if name == active else ""}>'
            f"{label}</a>"
            for name, path, label in (
                ("overview", "/", "Overview"),
                ("jobs", "/jobs", "Jobs"),
                ("workers", "/workers", "Workers"),
            )
        )
        session = ""
        if self.read_only:
            session = '<span class="tag">read-only</span>'
        elif self.has_token and self.needs_login:
            session = f'<a class="login" href="{self.base}/login">Log in</a>'
        elif self.has_token:
            session = (
                f'<form method="post" action="{self.base}/logout" class="inline">'
                '<button type="submit" class="link">Log out</button></form>'
            )
        return (
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{esc(heading)} · {esc(self.title)}</title>"
            f'<link rel="stylesheet" href="{self.base}/static/dashboard.css">'
            f'<script src="{self.base}/static/dashboard.js" defer></script>'
            f'</head><body data-base="{self.base}" data-refresh="{self.refresh_ms}"'
            f"{attrs}>"
            f'<header><a class="brand" href="{self.base}/">{esc(self.title)}</a>'
            f"<nav>{nav}</nav><div class=session>{session}</div></header>"
            f"<main><h1>{esc(heading)}</h1>{body}</main></body></html>"
        )

    def action(self, path: str, label: str, fields: Mapping[str, str] = {}, **attrs: str) -> str:
        """A POST form with one button; nothing in read-only mode."""
        if self.read_only:
            return ""
        hidden = "".join(
            f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in fields.items()
        )
        extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
        return (
            f'<form method="post" action="{self.base}{esc(path)}" class="inline"{extra}>'
            f'{hidden}<button type="submit">{esc(label)}</button></form>'
        )

    # -- pages ----------------------------------------------------------------------------

    def overview(
        self,
        stats: Mapping[str, int],
        by_type: Mapping[str, Mapping[str, int]],
        truncated: Sequence[str],
        workers: list[dict[str, Any]] | None,
    ) -> str:
        cards = "".join(
            f'<a class="card status-{s}" href="{self.base}/jobs?status={s}">'
            f'<span class="count" data-stat="{s}">{stats.get(s, 0)}</span>'
            f'<span class="label">{s}</span></a>'
            for s in STATUSES
        )
        extra = (
            f'<p class="muted">of the pending: <span data-stat="scheduled">'
            f'{stats.get("scheduled", 0)}</span> scheduled, <span data-stat="waiting">'
            f"{stats.get('waiting', 0)}</span> waiting on dependencies · total "
            f'<span data-stat="total">{stats.get("total", 0)}</span></p>'
        )
        body = (
            f'<section><div class="cards" id="status-cards">{cards}</div>{extra}</section>'
            "<section><h2>Throughput</h2>"
            '<p class="muted" id="throughput-caption">jobs finished per interval'
            " (complete, failed, cancelled)</p>"
            '<svg id="throughput" class="chart" viewBox="0 0 600 160" role="img" '
            'aria-label="throughput chart" preserveAspectRatio="none">'
            '<text x="300" y="85" text-anchor="middle" class="muted">collecting samples…</text>'
            "</svg></section>"
            f"<section><h2>Job types</h2>{self.type_table(by_type, truncated)}</section>"
            f"<section><h2>Live workers</h2>{self.worker_table(workers)}</section>"
        )
        return self.frame("Overview", body, active="overview", data={"page": "overview"})

    def type_table(self, by_type: Mapping[str, Mapping[str, int]], truncated: Sequence[str]) -> str:
        head = "".join(f"<th>{s}</th>" for s in STATUSES)
        rows = (
            "".join(
                f'<tr><td><a href="{self.base}/jobs?{esc(urlencode({"type": name}))}">'
                f"{esc(name)}</a></td>"
                + "".join(f"<td>{counts.get(s, 0)}</td>" for s in STATUSES)
                + "</tr>"
                for name, counts in by_type.items()
            )
            or f'<tr><td colspan="{len(STATUSES) + 1}" class="muted">no jobs</td></tr>'
        )
        note = (
            '<p class="muted">counted over the most recent jobs of: '
            f"{esc(', '.join(truncated))}</p>"
            if truncated
            else ""
        )
        return (
            f'<table id="type-table"><thead><tr><th>type</th>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>{note}"
        )

    def worker_table(self, workers: list[dict[str, Any]] | None) -> str:
        if not workers:
            why = "this queue does not list its workers" if workers is None else "no live workers"
            return (
                '<table id="worker-table" class="empty"><thead><tr><th>worker</th></tr></thead>'
                f'<tbody><tr><td class="muted">{why}</td></tr></tbody></table>'
            )
        columns: list[str] = []
        for row in workers:
            columns.extend(k for k in row if k not in columns)
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        rows = "".join(
            "<tr>" + "".join(f"<td>{plain_cell(row.get(c))}</td>" for c in columns) + "</tr>"
            for row in workers
        )
        return (
            f'<table id="worker-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        )

    def workers(self, workers: list[dict[str, Any]] | None) -> str:
        body = f'<section id="workers">{self.worker_table(workers)}</section>'
        return self.frame("Workers", body, active="workers", data={"page": "workers"})

    def jobs(
        self,
        jobs: Sequence[Job],
        *,
        status: str | None,
        job_type: str | None,
        offset: int,
        limit: int,
        has_more: bool,
        types: Iterable[str],
        notice: str | None,
    ) -> str:
        status_options = '<option value="">any status</option>' + "".join(
            f'<option value="{s}"{" selected" if s == status else ""}>{s}</option>'
            for s in STATUSES
        )
        type_options = "".join(f'<option value="{esc(t)}"></option>' for t in types)
        sizes = "".join(
            f'<option value="{n}"{" selected" if n == limit else ""}>{n}</option>'
            for n in sorted({10, 25, 50, 100, 200, limit})
        )
        filters = (
            f'<form method="get" action="{self.base}/jobs" class="filters" id="filters">'
            f'<label>status <select name="status">{status_options}</select></label>'
            f'<label>type <input name="type" list="job-types" value="{esc(job_type or "")}"'
            ' placeholder="any type"></label>'
            f'<datalist id="job-types">{type_options}</datalist>'
            f'<label>per page <select name="limit">{sizes}</select></label>'
            '<button type="submit">Filter</button></form>'
        )
        rows = (
            "".join(
                f'<tr data-job-id="{esc(j.id)}"><td><a href="{job_href(self.base, j.id)}">'
                f"<code>{esc(j.id)}</code></a></td><td>{esc(j.job_type)}</td>"
                f'<td><span class="badge status-{j.status.value}">{j.status.value}</span></td>'
                f"<td>{j.priority.value}</td>"
                f'<td><progress max="1" value="{j.progress:.4f}"></progress></td>'
                f"<td>{j.attempts}</td><td>{when(j.created_at)}</td><td>{when(j.updated_at)}</td></tr>"
                for j in jobs
            )
            or '<tr><td colspan="8" class="muted">no jobs match</td></tr>'
        )
        table = (
            '<table id="job-table"><thead><tr><th>id</th><th>type</th><th>status</th>'
            "<th>priority</th><th>progress</th><th>attempts</th><th>created</th>"
            f"<th>updated</th></tr></thead><tbody>{rows}</tbody></table>"
        )
        query = {k: v for k, v in (("status", status), ("type", job_type)) if v}
        pager = []
        if offset > 0:
            prev = urlencode({**query, "limit": limit, "offset": max(0, offset - limit)})
            pager.append(f'<a rel="prev" href="{self.base}/jobs?{esc(prev)}">← Previous</a>')
        first, last = (offset + 1, offset + len(jobs)) if jobs else (0, 0)
        pager.append(f'<span class="muted">{first} to {last}</span>')
        if has_more:
            nxt = urlencode({**query, "limit": limit, "offset": offset + limit})
            pager.append(f'<a rel="next" href="{self.base}/jobs?{esc(nxt)}">Next →</a>')
        actions = ""
        if not self.read_only:
            kept = {"type": job_type or ""}
            purge_choices = "".join(
                f'<label><input type="checkbox" name="status" value="{s}" checked> {s}</label>'
                for s in ("complete", "failed", "cancelled")
            )
            actions = (
                '<section class="actions"><h2>Actions</h2>'
                f'<form method="post" action="{self.base}/jobs/retry-failed" class="inline"'
                ' id="retry-failed">'
                f'<input name="job_type" value="{esc(kept["type"])}" placeholder="any type"'
                ' list="job-types" aria-label="type to retry">'
                '<button type="submit">Retry all failed</button></form>'
                f'<form method="post" action="{self.base}/jobs/purge" class="inline" id="purge"'
                ' data-confirm="Delete the finished jobs chosen?">'
                f"{purge_choices}"
                f'<input name="job_type" value="{esc(kept["type"])}" placeholder="any type"'
                ' list="job-types" aria-label="type to purge">'
                '<button type="submit">Purge</button></form></section>'
            )
        note = f'<p class="notice" role="status">{esc(notice)}</p>' if notice else ""
        body = f"{note}{filters}{table}<nav class=pager>{' '.join(pager)}</nav>{actions}"
        return self.frame("Jobs", body, active="jobs", data={"page": "jobs"})

    def job(self, job: Job, deps: Sequence[tuple[str, str | None]], notice: str | None) -> str:
        status = job.status.value
        pct = f"{job.progress * 100:.0f}%"
        buttons = ""
        if not self.read_only:
            path = f"/jobs/{quote(job.id, safe='')}"
            cancel = self.action(f"{path}/cancel", "Cancel", id="cancel-form")
            retry = self.action(f"{path}/retry", "Retry", id="retry-form")
            if job.status not in CANCELLABLE:
                cancel = cancel.replace("<form ", "<form hidden ", 1)
            if job.status not in RETRYABLE:
                retry = retry.replace("<form ", "<form hidden ", 1)
            buttons = f'<div class="buttons">{cancel}{retry}</div>'
        rows = [
            ("type", esc(job.job_type)),
            ("priority", job.priority.value),
            (
                "attempts",
                f'<span id="job-attempts">{job.attempts}</span>'
                f" (retries allowed: {job.max_retries}, base delay {job.retry_delay:g} s)",
            ),
            ("timeout", "—" if job.timeout is None else f"{job.timeout:g} s"),
            ("created", when(job.created_at)),
            ("updated", f'<span id="job-updated">{when(job.updated_at)}</span>'),
            ("due", when(job.execute_at)),
            ("started", f'<span id="job-started">{when(job.started_at)}</span>'),
            ("completed", f'<span id="job-completed">{when(job.completed_at)}</span>'),
            (
                "duration",
                '<span id="job-duration">'
                + ("—" if job.duration is None else f"{job.duration:.3f} s")
                + "</span>",
            ),
            ("ttl", "—" if job.ttl is None else f"{job.ttl} s after it ends"),
            ("unique key", esc(job.unique_key) if job.unique_key else "—"),
            (
                "worker",
                f'<span id="job-worker">{esc(job.worker_id) if job.worker_id else "—"}</span>',
            ),
            ("lease until", when(job.lease_expires_at)),
        ]
        details = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        dep_items = "".join(
            f'<li><a href="{job_href(self.base, dep)}"><code>{esc(dep)}</code></a> '
            + (
                f'<span class="badge status-{esc(st)}">{esc(st)}</span>'
                if st
                else '<span class="muted">gone</span>'
            )
            + "</li>"
            for dep, st in deps
        )
        deps_html = f"<ul>{dep_items}</ul>" if dep_items else '<p class="muted">none</p>'
        results = "" if job.results is None else pretty(job.results)
        error = "" if job.error is None else esc(job.error)
        note = f'<p class="notice" role="status">{esc(notice)}</p>' if notice else ""
        body = (
            f"{note}"
            f'<p class="jobid"><code>{esc(job.id)}</code></p>'
            '<section class="live">'
            f'<span id="job-status" class="badge status-{status}">{status}</span>'
            f'<progress id="job-progress" max="1" value="{job.progress:.4f}"></progress>'
            f'<span id="job-progress-text">{pct}</span>'
            f'<span id="job-message" class="muted">{esc(job.message or "")}</span>'
            f'<span id="live-state" class="muted"></span>'
            f"{buttons}</section>"
            f"<section><h2>Details</h2><table class=details>{details}</table></section>"
            f"<section><h2>Dependencies</h2>{deps_html}</section>"
            f"<section><h2>Data</h2><pre id=job-data>{pretty(job.data)}</pre></section>"
            f"<section><h2>Metadata</h2><pre id=job-metadata>{pretty(job.metadata)}</pre>"
            "</section>"
            f'<section><h2>Results</h2><pre id="job-results">{results}</pre></section>'
            f'<section><h2>Error</h2><pre id="job-error" class="error">{error}</pre></section>'
        )
        return self.frame(
            f"Job {job.job_type}",
            body,
            active="jobs",
            data={"page": "job", "job-id": job.id, "status": status},
        )

    def login(self, next_path: str, error: str | None) -> str:
        problem = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
        body = (
            f"{problem}"
            f'<form method="post" action="{self.base}/login" class="login-form">'
            f'<input type="hidden" name="next" value="{esc(next_path)}">'
            '<label>token <input type="password" name="token" autocomplete="current-password"'
            " required autofocus></label>"
            '<button type="submit">Log in</button></form>'
        )
        return self.frame("Log in", body, active="", data={"page": "login"})

    def error(self, status: int, message: str) -> str:
        body = f'<p class="error" role="alert">{esc(message)}</p>'
        return self.frame(f"{status}", body, active="", data={"page": "error"})
