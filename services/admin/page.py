"""The health page as HTML: plain, accessible, no script and no external asset (pure).

Every value that comes from data (names, tenants, error messages, samples) goes through
:func:`esc`; nothing else is interpolated. Rows carry stable ``data-testid`` attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from services.admin.probe import DlqDepth, KafkaSnapshot, PartitionLag
from services.admin.rows import NO_TENANT, HealthRow

LAG_NOTE = ("Consumer lag = reported high watermark minus committed offset, per partition, for the route group on "
            "the source topic and the delivery group on the delivery topic. On the embedded broker (Tansu) the "
            "high watermark is the base offset of the last batch, not the log end, so the lag shown may be "
            "slightly under.")


def esc(value: object) -> str:
    """HTML-escape ``value`` for text and double-quoted attributes."""
    return escape(str(value), quote=True)


def iso(ms: int) -> str:
    """Epoch ms as ISO-8601 UTC to the second."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ago(ms: int, now_ms: int) -> str:
    """``just now``, ``42 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    seconds = max(0, now_ms - ms) // 1000
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86_400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86_400} d ago"


def when(ms: int | None, now_ms: int) -> str:
    """A ``<time>`` element with the relative time and the ISO time as title, or ``never``."""
    if not ms:
        return '<span class="muted">never</span>'
    stamp = iso(ms)
    return f'<time datetime="{stamp}" title="{stamp}">{esc(ago(ms, now_ms))}</time>'


@dataclass(frozen=True)
class PageContext:
    """What a page render needs besides the rows."""

    now_ms: int
    csrf: str
    route_group: str
    deliver_group: str
    flash: tuple[str, str] | None = None  # (ok | error, text)
    stuck_groups: tuple[str, ...] = ()  # consumer groups a worker reported stuck (router.groupwatch)
    worker_alerts: str = ""  # the workers section (services/admin/workers.py), rendered: its alerts
    workers_html: str = ""  # and its table
    connections_html: str = ""  # the Connections section (services/admin/connections.py), rendered


@dataclass(frozen=True)
class RowKafka:
    """The Kafka-side numbers of a row's integration."""

    source_topic: str
    delivery_topic: str
    dlq: DlqDepth | None
    route_lag: list[PartitionLag]
    deliver_lag: list[PartitionLag]


def _state_cell(row: HealthRow, now_ms: int) -> str:
    state = row.state
    detail = ""
    if state.state != "active":
        since = f"since {when(state.since_ms, now_ms)}" if state.since_ms else ""
        detail = f'<div class="small">{since}</div>{reason_html(state.reason)}'
    label = state.state.replace("_", " ")
    return f'<td><span class="badge badge-{esc(state.state)}" data-testid="state">{esc(label)}</span>{detail}</td>'


REASON_SHOWN = 160  # characters of a state's reason shown in the table; the rest folds into <details>


def reason_html(reason: str) -> str:
    """A state's reason, wrapped anywhere (a partner's JSON body has no spaces) and folded when long,
    so one reason cannot widen the table past the screen."""
    if not reason:
        return ""
    if len(reason) <= REASON_SHOWN:
        return f'<div class="small reason" data-testid="state-reason">{esc(reason)}</div>'
    return (f'<details class="small reason" data-testid="state-reason"><summary>{esc(reason[:REASON_SHOWN])}…'
            f'</summary>{esc(reason)}</details>')


def _success_cell(row: HealthRow, now_ms: int) -> str:
    routed = (f'<div class="small">routed {when(row.last_routed_ms, now_ms)}</div>'
              if row.last_routed_ms else "")
    return f'<td data-testid="last-success">{when(row.last_success_ms, now_ms)}{routed}</td>'


def _error_cell(row: HealthRow, now_ms: int) -> str:
    error = row.last_error
    if error is None:
        return '<td data-testid="last-error"><span class="muted">none</span></td>'
    sample = ""
    if error.sample:
        sample = (f'<details><summary>Sample (redacted)</summary><pre data-testid="error-sample">'
                  f"{esc(error.sample)}</pre></details>")
    return (f'<td data-testid="last-error"><code data-testid="error-code">{esc(error.code)}</code>'
            f'<div class="message">{esc(error.message)}</div>'
            f'<div class="small">{when(error.at_ms, now_ms)}</div>{sample}</td>')


def _rate_cell(row: HealthRow) -> str:
    rate = row.success_rate
    if rate is None:
        return '<td class="num" data-testid="success-rate"><span class="muted">no traffic</span></td>'
    total = row.ok_1h + row.fail_1h
    percent = f"{rate * 100:.1f}%" if rate < 1 else "100%"
    level = "good" if rate >= 0.99 else "warn" if rate >= 0.9 else "bad"
    return (f'<td class="num" data-testid="success-rate"><span class="rate-{level}">{percent}</span>'
            f'<div class="small">{row.ok_1h} ok of {total}</div></td>')


def _dlq_cell(kafka: RowKafka, snapshot: KafkaSnapshot) -> str:
    if kafka.dlq is None or not snapshot.taken_ms:
        why = snapshot.error or "not read from Kafka yet"
        return f'<td class="num" data-testid="dlq-depth"><span class="muted" title="{esc(why)}">—</span></td>'
    detail = ""
    if kafka.dlq.by_code:
        items = "".join(f"<li><code>{esc(code)}</code> {n}</li>" for code, n in kafka.dlq.by_code.items())
        detail = f'<ul class="small codes">{items}</ul>'
    topics = ", ".join(f"{t}: {n}" for t, n in kafka.dlq.by_topic.items()) or "no records"
    return (f'<td class="num" data-testid="dlq-depth"><span title="{esc(topics)}">{kafka.dlq.depth}</span>'
            f"{detail}</td>")


def _lag_part(label: str, group: str, topic: str, parts: list[PartitionLag]) -> str:
    if not parts:
        return f'<div><span class="muted" title="{esc(topic)} not found">{esc(label)} —</span></div>'
    title = f"group {group} on {topic}: " + ", ".join(
        f"p{p.partition} {p.lag} (committed {'none' if p.committed is None else p.committed}, high {p.high})"
        for p in parts)
    return f'<div title="{esc(title)}">{esc(label)} {sum(p.lag for p in parts)}</div>'


def _lag_cell(kafka: RowKafka, snapshot: KafkaSnapshot, ctx: PageContext) -> str:
    if not snapshot.taken_ms:
        why = snapshot.error or "not read from Kafka yet"
        return f'<td class="num" data-testid="consumer-lag"><span class="muted" title="{esc(why)}">—</span></td>'
    return (f'<td class="num" data-testid="consumer-lag">'
            f"{_lag_part('route', ctx.route_group, kafka.source_topic, kafka.route_lag)}"
            f"{_lag_part('deliver', ctx.deliver_group, kafka.delivery_topic, kafka.deliver_lag)}"
            f'<a href="#lag-note" class="small" aria-label="about consumer lag">*</a></td>')


def _actions_cell(row: HealthRow, kafka: RowKafka, ctx: PageContext) -> str:
    name = esc(row.integration)
    csrf = f'<input type="hidden" name="csrf" value="{esc(ctx.csrf)}">'
    if row.state.state == "active":
        toggle = (f'<form method="post" action="/integrations/{name}/pause">{csrf}'
                  f'<button type="submit" data-testid="pause-{name}" aria-label="Pause {name}">Pause</button></form>')
    else:
        toggle = (f'<form method="post" action="/integrations/{name}/resume">{csrf}'
                  f'<button type="submit" data-testid="resume-{name}" aria-label="Resume {name}">Resume</button>'
                  f"</form>")
    if kafka.dlq is not None and kafka.dlq.depth == 0:
        return f'<td class="actions">{toggle}<span class="small muted">DLQ empty</span></td>'
    codes = list(kafka.dlq.by_code) if kafka.dlq else []
    if row.last_error and row.last_error.code not in codes:
        codes.append(row.last_error.code)
    default = codes[0] if codes else ""
    field_id = f"code-{name}-{esc(row.tenant)}"
    options = "".join(f'<option value="{esc(c)}"></option>' for c in codes)
    replay = (f'<form method="post" action="/integrations/{name}/replay" class="replay">{csrf}'
              f'<label for="{field_id}">DLQ code</label>'
              f'<input id="{field_id}" name="code" value="{esc(default)}" list="{field_id}-list" required '
              f'size="18" pattern="[A-Za-z0-9_.*?\\-]+" data-testid="replay-code-{name}">'
              f'<datalist id="{field_id}-list">{options}</datalist>'
              f'<button type="submit" data-testid="replay-{name}">Replay</button></form>')
    return f'<td class="actions">{toggle}{replay}</td>'


def render_row(row: HealthRow, kafka: RowKafka, snapshot: KafkaSnapshot, ctx: PageContext) -> str:
    tenant = esc(row.tenant) if row.tenant != NO_TENANT else '<span class="muted" title="no traffic yet">—</span>'
    return (f'<tr data-testid="row-{esc(row.integration)}-{esc(row.tenant)}">'
            f'<th scope="row">{esc(row.integration)}</th><td>{tenant}</td>'
            f"{_state_cell(row, ctx.now_ms)}{_success_cell(row, ctx.now_ms)}{_error_cell(row, ctx.now_ms)}"
            f"{_rate_cell(row)}{_dlq_cell(kafka, snapshot)}{_lag_cell(kafka, snapshot, ctx)}"
            f"{_actions_cell(row, kafka, ctx)}</tr>")


COLUMNS = ("Integration", "Tenant", "State", "Last success", "Last error", "Success rate 1h", "DLQ depth",
           "Consumer lag", "Actions")


def render_page(rows: list[HealthRow], kafka: Mapping[str, RowKafka], snapshot: KafkaSnapshot,
                ctx: PageContext) -> str:
    """The whole health page."""
    flash = ""
    if ctx.flash is not None:
        kind, text = ctx.flash
        role = "alert" if kind == "error" else "status"
        flash = f'<div class="flash flash-{esc(kind)}" role="{role}" data-testid="flash">{esc(text)}</div>'
    kafka_note = (f"Kafka read {when(snapshot.taken_ms, ctx.now_ms)}" if snapshot.taken_ms
                  else "Kafka not read yet")
    problem = (f'<div class="flash flash-error" role="alert">{esc(snapshot.error)}; DLQ depth and lag are '
               f"from the last successful read.</div>" if snapshot.error else "")
    problem += "".join(
        f'<div class="flash flash-error" role="alert" data-testid="stuck-group">Consumer group <code>{esc(g)}</code> '
        f"is stuck: its workers get no partitions, it commits nothing and it has lag. Restart its workers one at "
        f"a time; see docs/embedded-broker.md.</div>" for g in ctx.stuck_groups)
    head = "".join(f'<th scope="col">{c}</th>' for c in COLUMNS)
    body = "".join(render_row(r, kafka[r.integration], snapshot, ctx) for r in rows) or (
        f'<tr><td colspan="{len(COLUMNS)}">No integrations in the catalog.</td></tr>')
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Integration health · event-router</title>
<link rel="stylesheet" href="/static/admin.css">
</head>
<body>
<header>
<h1>Integration health</h1>
<p class="small">Page built {when(ctx.now_ms, ctx.now_ms)} ({iso(ctx.now_ms)}); {kafka_note}.
<a href="/">Refresh</a> · <a href="/api/health">JSON</a></p>
<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" value="{esc(ctx.csrf)}">
<button type="submit">Log out</button></form>
</header>
<main>
{flash}{problem}{ctx.worker_alerts}
<table>
<caption>One row per integration &times; tenant. State, DLQ depth, consumer lag and actions are per integration.
Success rate: records delivered (or routed, for integrations without a delivery worker) against records
that failed, over the last hour.</caption>
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
{ctx.workers_html}
{ctx.connections_html}
<p id="lag-note" class="small">* {esc(LAG_NOTE)} Groups: route <code>{esc(ctx.route_group)}</code>,
delivery <code>{esc(ctx.deliver_group)}</code>.</p>
<p class="small">Replay sends an integration's DLQ records with the given code (globs such as <code>map.*</code>
work) back to their original topic. Records replayed before are not replayed again.</p>
</main>
</body>
</html>
"""


def render_login(message: str | None = None) -> str:
    """The login form (the token is posted, never put in the page)."""
    error = f'<div class="flash flash-error" role="alert">{esc(message)}</div>' if message else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · event-router admin</title>
<link rel="stylesheet" href="/static/admin.css">
</head>
<body>
<main class="narrow">
<h1>Integration health</h1>
{error}
<form method="post" action="/login">
<label for="token">Admin token (ROUTER_ADMIN_TOKEN)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
</form>
</main>
</body>
</html>
"""


def render_message(title: str, message: str) -> str:
    """A small page for errors (404, expired form, unavailable service)."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)} · event-router admin</title>
<link rel="stylesheet" href="/static/admin.css">
</head>
<body>
<main class="narrow">
<h1>{esc(title)}</h1>
<p role="alert" data-testid="message">{esc(message)}</p>
<p><a href="/">Back to the health page</a></p>
</main>
</body>
</html>
"""


STYLESHEET = """\
:root { color-scheme: light; font-family: system-ui, sans-serif; font-size: 15px; color: #1b1f24; }
body { margin: 0 1.5rem 2rem; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0 1.5rem; }
h1 { font-size: 1.4rem; margin: 1rem 0 .25rem; }
.narrow { max-width: 32rem; }
table { border-collapse: collapse; width: 100%; margin-top: .75rem; }
caption { text-align: left; color: #57606a; padding-bottom: .5rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: .45rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; position: sticky; top: 0; }
td.num { text-align: right; white-space: nowrap; }
.small { font-size: .82rem; color: #57606a; }
.muted { color: #6e7781; }
.message { max-width: 28rem; overflow-wrap: anywhere; }
.reason { max-width: 16rem; overflow-wrap: anywhere; }
code { font-family: ui-monospace, monospace; background: #f6f8fa; padding: 0 .2rem; border-radius: 3px; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 32rem; max-height: 14rem; overflow: auto;
      background: #f6f8fa; padding: .5rem; font-size: .8rem; }
.badge { display: inline-block; padding: .1rem .5rem; border-radius: 1rem; font-size: .82rem; font-weight: 600;
         border: 1px solid; }
.badge-active { color: #116329; background: #dafbe1; border-color: #4ac26b; }
.badge-paused { color: #7d4e00; background: #fff8c5; border-color: #d4a72c; }
.badge-needs_reconnect { color: #82071e; background: #ffebe9; border-color: #ff8182; }
.badge-disconnected { color: #57606a; background: #f6f8fa; border-color: #d0d7de; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .25rem; }
.badge-worker-ok { color: #116329; background: #dafbe1; border-color: #4ac26b; }
.badge-worker-retrying { color: #7d4e00; background: #fff8c5; border-color: #d4a72c; }
.badge-worker-failing, .badge-worker-stale { color: #82071e; background: #ffebe9; border-color: #ff8182; }
.rate-good { color: #116329; } .rate-warn { color: #7d4e00; } .rate-bad { color: #82071e; font-weight: 600; }
.flash { padding: .6rem .8rem; border-radius: 6px; margin: .75rem 0; border: 1px solid; }
.flash-ok { background: #dafbe1; border-color: #4ac26b; }
.flash-error { background: #ffebe9; border-color: #ff8182; }
.actions form { margin: 0 0 .4rem; }
.replay { display: flex; gap: .3rem; align-items: center; flex-wrap: wrap; }
.replay label { font-size: .82rem; }
ul.codes { list-style: none; margin: .2rem 0 0; padding: 0; }
button { font: inherit; padding: .2rem .7rem; cursor: pointer; }
input { font: inherit; }
a:focus, button:focus, input:focus, summary:focus { outline: 2px solid #0969da; outline-offset: 2px; }
"""
