"""Notifications: tell people and monitoring what a scheduled ``run`` (or ``check``) found.

The config's ``notifications:`` list names notifiers; :func:`notifiers_from_mapping` turns it into
:class:`Notifier` objects (every shape problem is a ``ConfigError``), and :func:`notify` hands one
:class:`Event` to each notifier that wants its kind. :func:`notify` never raises (Ctrl-C aside): a
notifier that fails (connection refused, SMTP authentication, HTTP 500, an unwritable file, a
secret that cannot be read) becomes a warning string naming the notifier (type and host or path,
never a secret) and the reason. The exit code is the caller's business.

Event kinds: ``success``, ``failure``, ``warning`` (the run worked but something needs a look),
``stale`` (from ``check``: the newest backup is too old). Each entry's ``on:`` lists the kinds it
acts on. Defaults: ``failure, warning, stale`` for email, slack, webhook and apprise;
``success`` for ``flag_file`` (which also accepts ``warning``, never ``failure``/``stale``: a
flag touched by a failed run would hide it); ``success, failure, warning`` for ``prometheus``
(every run is recorded; ``stale`` is not a run and is refused).

Secrets (an SMTP password, a Slack webhook URL, which is itself a token, header values such as
``Authorization``, apprise URLs) are never written in the config: they are secret sources,
``{env: NAME}``, ``{file: PATH}`` (relative to the config's folder), ``{fd: N}`` or
``{command: CMD}`` (see :mod:`albackup.secrets`), read when the first notification is sent and then
kept in memory (so an ``fd`` source works for several events). What is sent never contains them:
every error string, title and destination goes through :func:`albackup.secrets.mask_secrets` (and
URL query tokens are masked), and the notifier's own secrets are replaced by ``***`` in anything
it sends or reports.

Example (YAML)::

    notifications:
      - type: email
        on: [failure, warning, stale, success]
        host: smtp.example.com
        port: 587                       # default: 25 (none), 587 (starttls), 465 (ssl)
        security: starttls              # none | starttls (default) | ssl (SMTPS, implicit TLS)
        username: backup@example.com    # username and password go together; not with security: none
        password: {env: SMTP_PASSWORD}  # a secret source, never plain text
        tls_verify: true                # false: accept any certificate (self-signed test servers)
        ca_file: /etc/ssl/smtp-ca.pem   # or trust this CA bundle (relative: to the config's folder)
        from: albackup@example.com
        to: [ops@example.com]           # everyone, unless a per-kind list is given:
        success_to: [backup-log@example.com]
        failure_to: [ops@example.com, dba@example.com]   # also warning_to, stale_to
        timeout: 30                     # seconds (default 30)
      - type: slack
        url: {env: SLACK_WEBHOOK_URL}   # the webhook URL is a token: a secret source only
        timeout: 15                     # default 15
      - type: webhook
        url: https://hooks.example.com/albackup   # plain (no credentials in it) or a secret source
        headers:
          Authorization: {file: webhook-auth.txt} # values: plain text, or secret sources
          X-Origin: albackup                      # (a header named like a secret must be a source)
        on: [success, failure, warning, stale]
      - type: flag_file
        path: /var/lib/albackup/last-success    # touched on success: monitor its age
      - type: prometheus
        path: /var/lib/node_exporter/textfile/albackup.prom
      - type: apprise                   # only when the `apprise` package is installed
        urls: [{env: APPRISE_URL}]

Prometheus gauges, one series per database (label ``database``), written atomically (a temp file in
the same folder, then a rename; the temp name does not end in ``.prom``, so node_exporter never
reads a half-written file). The existing file is read first and series it has are carried over:

- ``albackup_last_run_timestamp_seconds``: when the last run that looked at the database finished;
- ``albackup_last_run_success``: 1 when that run backed it up or found nothing due, 0 when it failed;
- ``albackup_last_success_timestamp_seconds``: when the last backup was made (the run's finish time);
  a database that failed, or was not due, keeps its previous value;
- ``albackup_last_duration_seconds``: how long the database took in the last run that did work on
  it (backed up or failed);
- ``albackup_last_backup_bytes``, ``albackup_last_backup_rows``: of the last backup made.

A ``skipped`` database keeps all its series; databases not in the event keep theirs too.
"""
from __future__ import annotations

import abc

import contextlib
import dataclasses
import datetime as dt
import difflib
import json
import math
import os
import re
import smtplib
import socket
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any, ClassVar, Iterable
from urllib.parse import urlsplit

from . import __version__
from .errors import AlbackupError, ConfigError
from .secrets import SecretSource, from_mapping, mask_secrets

__all__ = ["KINDS", "Event", "Notifier", "EmailNotifier", "SlackNotifier", "WebhookNotifier",
           "FlagFileNotifier", "PrometheusNotifier", "AppriseNotifier", "notifiers_from_mapping",
           "notify", "event_from_run", "event_to_dict", "format_text"]

KINDS = ("success", "failure", "warning", "stale")
DEFAULT_ON = ("failure", "warning", "stale")
HTTP_TIMEOUT = 15.0
SMTP_TIMEOUT = 30.0
SMTP_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
_SECRETISH = re.compile(r"pa?s+w|pwd|secret|token|credential|auth|api[-_]?key|cookie|signature", re.I)
_QUERY_TOKEN = re.compile(
    r"(?i)([?&;](?:[^=&\s]*(?:token|secret|passw|pwd|sig|signature|key|auth|credential)[^=&\s]*)=)[^&\s#]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


# ---------------------------------------------------------------------------------------- event

@dataclass(frozen=True)
class Event:
    """What a notifier is told; built by the caller from a run (see :func:`event_from_run`)."""

    kind: str                     # "success" | "failure" | "warning" | "stale" (from `check`)
    title: str                    # one line, e.g. "albackup on h1: 1 of 3 databases FAILED"
    host: str
    started: dt.datetime
    finished: dt.datetime
    databases: list[dict]         # per database: name, status, backup, rows, bytes, seconds, error, destinations
    log_file: str | None = None   # where to look
    warnings: list[str] = field(default_factory=list)   # what a "warning" (or "stale") event is about

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Event.kind must be one of {', '.join(KINDS)}, not {self.kind!r}")


def event_from_run(result: Any, *, host: str, started: dt.datetime, finished: dt.datetime,
                   log_file: str | None = None, warnings: Iterable[str] = ()) -> Event:
    """An Event from a ``jobs.RunResult`` (anything with ``entries`` of ``to_dict()``-able entries):
    ``failure`` when a database failed, else ``warning`` when ``warnings`` were given, else ``success``."""
    dbs = [e.to_dict() if hasattr(e, "to_dict") else dict(e) for e in result.entries]
    warnings = [str(w) for w in warnings]
    failed = sum(1 for d in dbs if d.get("status") == "failed")
    done = sum(1 for d in dbs if d.get("status") == "backed up")
    counts = _counts(dbs)
    if failed:
        kind, title = "failure", f"albackup on {host}: {failed} of {len(dbs)} database{_s(len(dbs))} FAILED"
    elif warnings:
        kind = "warning"
        title = f"albackup on {host}: {len(warnings)} warning{_s(len(warnings))} ({counts})"
    else:
        kind, title = "success", f"albackup on {host}: {done} of {len(dbs)} database{_s(len(dbs))} backed up"
        if counts and done != len(dbs):
            title += f" ({counts})"
    return Event(kind, title, host, started, finished, dbs, log_file, warnings)


def _counts(dbs: list[dict]) -> str:
    order: dict[str, int] = {}
    for d in dbs:
        st = str(d.get("status") or "?")
        order[st] = order.get(st, 0) + 1
    return ", ".join(f"{n} {st}" for st, n in order.items())


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value


def _clean_db(d: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == "exc":
            continue
        if k == "error" and v is not None:
            v = mask_secrets(v, known)
        elif k == "destinations" and v is not None:
            v = [mask_secrets(x, known) for x in (v if isinstance(v, (list, tuple)) else [v])]
        out[str(k)] = _jsonable(v, known)
    return out


def _jsonable(v: Any, known: Iterable[str]) -> Any:
    if v is None or isinstance(v, (bool, int, float)):
        return v
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x, known) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x, known) for k, x in v.items()}
    return mask_secrets(v, known)


def event_to_dict(event: Event, known: Iterable[str] = ()) -> dict[str, Any]:
    """The whole event as JSON-able data: datetimes in ISO 8601, secrets masked."""
    known = list(known)
    return {
        "kind": event.kind,
        "title": mask_secrets(_one_line(event.title), known),
        "host": event.host,
        "started": _iso(event.started),
        "finished": _iso(event.finished),
        "duration_seconds": _duration(event),
        "databases": [_clean_db(d, known) for d in event.databases],
        "log_file": event.log_file,
        "warnings": [mask_secrets(w, known) for w in event.warnings],
        "albackup_version": __version__,
    }


def _duration(event: Event) -> float | None:
    try:
        return round((event.finished - event.started).total_seconds(), 3)
    except (TypeError, AttributeError):   # naive and aware mixed, or not datetimes
        return None


def _size(n: Any) -> str:
    try:
        value = float(n)
    except (TypeError, ValueError):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"   # pragma: no cover


def _seconds(s: Any) -> str:
    try:
        v = float(s)
    except (TypeError, ValueError):
        return "?"
    if v < 120:
        return f"{v:.1f} s"
    m, sec = divmod(int(round(v)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"


def _when(t: Any) -> str:
    return t.isoformat(sep=" ", timespec="seconds") if isinstance(t, dt.datetime) else str(t)


def format_text(event: Event, known: Iterable[str] = ()) -> str:
    """The plain-text summary sent by email (and apprise): what ran, what failed and why, sizes,
    durations, where to look. Secrets are masked."""
    known = list(known)
    lines = [mask_secrets(_one_line(event.title), known), ""]
    lines.append(f"host:      {event.host}")
    lines.append(f"started:   {_when(event.started)}")
    dur = _duration(event)
    lines.append(f"finished:  {_when(event.finished)}" + (f" (took {_seconds(dur)})" if dur is not None else ""))
    lines.append(f"log file:  {event.log_file or '(none configured: see the job output)'}")
    if event.warnings:
        lines += ["", "Warnings:"] + [f"  - {mask_secrets(w, known)}" for w in event.warnings]
    failed = [d for d in event.databases if d.get("status") == "failed"]
    others = [d for d in event.databases if d.get("status") != "failed"]
    if failed:
        lines += ["", f"FAILED ({len(failed)}):"]
        for d in failed:
            lines.append(f"  {d.get('name', '?')}: failed after {_seconds(d.get('seconds'))}")
            lines.append(f"    error: {mask_secrets(d.get('error') or 'unknown error', known)}")
            lines += _dest_lines(d, known)
    if others:
        lines += ["", "Databases:" if not failed else "Other databases:"]
        for d in others:
            st = d.get("status", "?")
            if st == "backed up":
                lines.append(f"  {d.get('name', '?')}: backed up as {d.get('backup') or '?'}, "
                             f"{_count(d.get('rows'))} rows, {_size(d.get('bytes'))}, "
                             f"{_seconds(d.get('seconds'))}")
            else:
                lines.append(f"  {d.get('name', '?')}: {st}")
            if d.get("error"):
                lines.append(f"    note: {mask_secrets(d['error'], known)}")
            if d.get("pruned"):
                lines.append(f"    pruned: {', '.join(str(p) for p in d['pruned'])}")
            lines += _dest_lines(d, known)
    if not event.databases:
        lines += ["", "No databases were part of this event."]
    lines += ["", f"-- albackup {__version__} on {event.host}"]
    return "\n".join(lines) + "\n"


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else str(n if n is not None else "?")


def _dest_lines(d: Mapping[str, Any], known: list[str]) -> list[str]:
    dests = d.get("destinations") or []
    if isinstance(dests, str):
        dests = [dests]
    return [f"    stored in: {', '.join(mask_secrets(x, known) for x in dests)}"] if dests else []


# ------------------------------------------------------------------------------------- notifiers

class NotifyError(Exception):
    """A notifier could not deliver; the message is safe to show (no secrets)."""


class _Sourced:
    """A secret source read once, on first use, and then kept (an ``fd`` can be read only once)."""

    __slots__ = ("source", "_value")

    def __init__(self, source: SecretSource) -> None:
        self.source = source
        self._value: str | None = None

    def get(self) -> str:
        if self._value is None:
            raw = self.source.read()
            try:
                self._value = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise NotifyError(f"{self.source.where}: the secret from {self.source.describe()} "
                                  "is not UTF-8 text") from None
        return self._value

    @property
    def known(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return f"<secret from {self.source.describe()}>"


class Notifier(abc.ABC):
    """One configured notification target."""

    type: ClassVar[str] = "?"
    default_on: ClassVar[tuple[str, ...]] = DEFAULT_ON
    allowed_on: ClassVar[tuple[str, ...]] = KINDS

    def __init__(self, on: frozenset[str], keypath: str = "") -> None:
        self.on = on
        self.keypath = keypath

    def wants(self, event: Event) -> bool:
        return event.kind in self.on

    def target(self) -> str:
        return ""

    def label(self) -> str:
        t = self.target()
        return f"{self.type} ({t})" if t else self.type

    def secrets(self) -> list[str]:
        """The secrets this notifier has read so far (masked in what it sends and reports)."""
        return []

    @abc.abstractmethod
    def send(self, event: Event) -> None:
        """Deliver ``event``; raise on failure (notify() turns that into a warning)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label()} on={sorted(self.on)}>"


def notify(notifiers: list[Notifier], event: Event) -> list[str]:
    """Give ``event`` to each notifier whose ``on`` has its kind; the warnings of those that failed.
    Never raises (except for KeyboardInterrupt): one broken notifier does not stop the others."""
    warnings: list[str] = []
    for n in notifiers:
        try:
            if not n.wants(event):
                continue
            n.send(event)
        except Exception as exc:  # noqa: BLE001 - by contract, any failure becomes a warning
            warnings.append(_warning(n, exc))
    return warnings


def _warning(n: Notifier, exc: BaseException) -> str:
    try:
        known = n.secrets()
        label = mask_secrets(n.label(), known)
        return f"notification {label} failed: {mask_secrets(_reason(exc, n), known)}"
    except Exception:  # noqa: BLE001 - a notifier too broken to describe itself
        return f"notification {getattr(n, 'type', type(n).__name__)} failed: {type(exc).__name__}"


def _reason(exc: BaseException, n: Notifier) -> str:
    timeout = getattr(n, "timeout", None)
    if isinstance(exc, NotifyError):
        return str(exc)
    if isinstance(exc, AlbackupError):
        return exc.message
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"SMTP authentication failed ({_smtp_reply(exc.smtp_code, exc.smtp_error)})"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{r}: {_smtp_reply(*v)}" for r, v in exc.recipients.items())
        return f"the SMTP server refused every recipient ({refused})"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"the SMTP server refused the sender {exc.sender} ({_smtp_reply(exc.smtp_code, exc.smtp_error)})"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the SMTP server answered {_smtp_reply(exc.smtp_code, exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"the SMTP server closed the connection ({exc})" if str(exc) else "the SMTP server closed the connection"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"the SMTP server does not support it: {exc}"
    if isinstance(exc, smtplib.SMTPException):
        return f"SMTP error: {exc}"
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason or ''}".rstrip()
        if 300 <= exc.code < 400:
            return f"{reason} (redirects are not followed: configure the final URL)"
        body = ""
        with contextlib.suppress(Exception):
            body = _one_line(exc.read(500).decode("utf-8", "replace"), 200)
        return f"{reason}: {body}" if body else reason
    if isinstance(exc, urllib.error.URLError):
        inner = exc.reason
        return _reason(inner, n) if isinstance(inner, BaseException) else f"cannot connect: {inner}"
    return _os_reason(exc, timeout)


def _os_reason(exc: BaseException, timeout: Any) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the server's TLS certificate is not trusted ({exc.verify_message or exc.reason}); "
                "give ca_file, or tls_verify: false for a test server")
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g} s" if isinstance(timeout, (int, float)) else "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if isinstance(exc, OSError):
        what = exc.strerror or type(exc).__name__
        return f"{what}: {exc.filename}" if exc.filename else what
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _smtp_reply(code: Any, msg: Any) -> str:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    return _one_line(f"{code} {text}", 200)


# ----------------------------------------------------------------------------------- email

class EmailNotifier(Notifier):
    type = "email"

    def __init__(self, on: frozenset[str], keypath: str, *, host: str, port: int, security: str,
                 username: str | None, password: SecretSource | None, sender: str,
                 recipients: Mapping[str, tuple[str, ...]], timeout: float, tls_verify: bool,
                 ca_file: str | None) -> None:
        super().__init__(on, keypath)
        self.host, self.port, self.security = host, port, security
        self.username = username
        self._password = _Sourced(password) if password else None
        self.sender = sender
        self.recipients = dict(recipients)
        self.timeout, self.tls_verify, self.ca_file = timeout, tls_verify, ca_file

    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def secrets(self) -> list[str]:
        return [self._password.known] if self._password and self._password.known else []

    def recipients_for(self, kind: str) -> tuple[str, ...]:
        return self.recipients.get(kind) or self.recipients.get("to") or ()

    def message(self, event: Event) -> EmailMessage:
        known = self.secrets()
        msg = EmailMessage()
        msg["Subject"] = mask_secrets(_one_line(event.title, 200), known)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients_for(event.kind))
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid("albackup", domain=_domain(event.host))
        msg["X-Albackup-Event"] = event.kind
        msg.set_content(format_text(event, known))
        return msg

    def send(self, event: Event) -> None:
        rcpts = self.recipients_for(event.kind)
        if not rcpts:
            raise NotifyError(f"no recipients for a {event.kind} event (set to or {event.kind}_to)")
        password = self._password.get() if self._password else None
        msg = self.message(event)
        local = _domain(socket.gethostname())
        ctx = _tls_context(self.tls_verify, self.ca_file) if self.security != "none" else None
        if self.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, local_hostname=local,
                                                  timeout=self.timeout, context=ctx)
        else:
            smtp = smtplib.SMTP(self.host, self.port, local_hostname=local, timeout=self.timeout)
        ok = False
        try:
            smtp.ehlo()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise NotifyError("the SMTP server does not offer STARTTLS (security: starttls)")
                smtp.starttls(context=ctx)
                smtp.ehlo()
            if self.username is not None and password is not None:
                smtp.login(self.username, password)
            refused = smtp.send_message(msg, self.sender, list(rcpts))
            if refused:
                who = "; ".join(f"{r}: {_smtp_reply(*v)}" for r, v in refused.items())
                raise NotifyError(f"the SMTP server refused some recipients ({who}); the others got it")
            ok = True
        finally:
            if ok:   # after a failure just hang up: a polite QUIT to a stuck server would wait again
                with contextlib.suppress(Exception):
                    smtp.quit()
            smtp.close()


def _domain(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9.\-]", "", str(name or "")).strip(".-")
    return name or "localhost"


def _tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ------------------------------------------------------------------------------------- HTTP

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: a POST would turn into a GET, and headers could go elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


def _post_json(url: str, payload: Any, headers: Mapping[str, str], timeout: float) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyError("the URL is not an http:// or https:// URL")
    data = json.dumps(payload, default=str).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": f"albackup/{__version__}",
        **headers})
    opener = urllib.request.build_opener(_NoRedirect())
    with opener.open(req, timeout=timeout) as resp:
        resp.read(64 * 1024)


def _host_of(url: str | None) -> str:
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if host and parts.port else host
    except ValueError:
        return ""


class SlackNotifier(Notifier):
    type = "slack"

    def __init__(self, on: frozenset[str], keypath: str, *, url: SecretSource, timeout: float) -> None:
        super().__init__(on, keypath)
        self._url = _Sourced(url)
        self.timeout = timeout

    def target(self) -> str:
        host = _host_of(self._url.known)
        return host or f"URL from {self._url.source.describe()}"

    def secrets(self) -> list[str]:
        return [self._url.known] if self._url.known else []

    def text(self, event: Event) -> str:
        known = self.secrets()
        icon = {"success": ":white_check_mark:", "failure": ":x:", "warning": ":warning:",
                "stale": ":hourglass:"}.get(event.kind, "")
        lines = [f"{icon} *{_slack_escape(mask_secrets(_one_line(event.title), known))}*".strip()]
        for d in event.databases:
            st = d.get("status", "?")
            name = _slack_escape(str(d.get("name", "?")))
            if st == "failed":
                err = _slack_escape(mask_secrets(_one_line(d.get("error") or "unknown error", 500), known))
                lines.append(f"• `{name}` FAILED after {_seconds(d.get('seconds'))}: {err}")
            elif st == "backed up":
                lines.append(f"• `{name}` backed up: {_count(d.get('rows'))} rows, {_size(d.get('bytes'))}, "
                             f"{_seconds(d.get('seconds'))}")
            else:
                lines.append(f"• `{name}` {_slack_escape(str(st))}")
        for w in event.warnings:
            lines.append(f"• warning: {_slack_escape(mask_secrets(_one_line(w, 500), known))}")
        if event.log_file:
            lines.append(f"log: `{_slack_escape(event.log_file)}`")
        return "\n".join(lines)

    def send(self, event: Event) -> None:
        url = self._url.get()
        _post_json(url, {"text": self.text(event)}, {}, self.timeout)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class WebhookNotifier(Notifier):
    type = "webhook"

    def __init__(self, on: frozenset[str], keypath: str, *, url: str | SecretSource,
                 headers: Mapping[str, str | SecretSource], timeout: float) -> None:
        super().__init__(on, keypath)
        self._plain_url = url if isinstance(url, str) else None
        self._url = None if isinstance(url, str) else _Sourced(url)
        self._headers = {k: v if isinstance(v, str) else _Sourced(v) for k, v in headers.items()}
        self.timeout = timeout

    def target(self) -> str:
        if self._plain_url:
            return _host_of(self._plain_url)
        assert self._url is not None
        return _host_of(self._url.known) or f"URL from {self._url.source.describe()}"

    def secrets(self) -> list[str]:
        out = [self._url.known] if self._url and self._url.known else []
        out += [v.known for v in self._headers.values() if isinstance(v, _Sourced) and v.known]
        return out

    def send(self, event: Event) -> None:
        url = self._plain_url or self._url.get()  # type: ignore[union-attr]
        headers = {k: v if isinstance(v, str) else v.get() for k, v in self._headers.items()}
        for k, v in headers.items():
            if "\r" in v or "\n" in v:
                raise NotifyError(f"header {k}: its value has a line break")
        _post_json(url, event_to_dict(event, self.secrets()), headers, self.timeout)


# ------------------------------------------------------------------------------------- files

class FlagFileNotifier(Notifier):
    type = "flag_file"
    default_on = ("success",)
    allowed_on = ("success", "warning")

    def __init__(self, on: frozenset[str], keypath: str, *, path: Path) -> None:
        super().__init__(on, keypath)
        self.path = path

    def target(self) -> str:
        return str(self.path)

    def send(self, event: Event) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.utime(fd)
        finally:
            os.close(fd)


PROM_METRICS = {
    "albackup_last_success_timestamp_seconds": "Unix time of the run that made the last backup of the database.",
    "albackup_last_run_timestamp_seconds": "Unix time the last run that looked at the database finished.",
    "albackup_last_run_success": "1 if the last run backed the database up or found nothing due, 0 if it failed.",
    "albackup_last_duration_seconds": "Seconds the database took in the last run that backed it up or failed.",
    "albackup_last_backup_bytes": "Size in bytes of the last backup of the database.",
    "albackup_last_backup_rows": "Rows in the last backup of the database.",
}
_PROM_LINE = re.compile(r'^(albackup_[a-z_]+)\{database="((?:[^"\\]|\\.)*)"\}\s+(\S+)')


def _prom_unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), s)


def _prom_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _prom_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() and abs(v) < 2 ** 53 else repr(v)


def read_prometheus(path: Path) -> dict[str, dict[str, float]]:
    """{metric: {database: value}} of an existing textfile; unreadable or odd lines are ignored."""
    out: dict[str, dict[str, float]] = {m: {} for m in PROM_METRICS}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = _PROM_LINE.match(line)
        if not m or m.group(1) not in out:
            continue
        try:
            out[m.group(1)][_prom_unescape(m.group(2))] = float(m.group(3))
        except ValueError:
            continue
    return out


def format_prometheus(values: Mapping[str, Mapping[str, float]]) -> str:
    lines = []
    for metric, help_text in PROM_METRICS.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for db in sorted(values.get(metric, {})):
            lines.append(f'{metric}{{database="{_prom_escape(db)}"}} {_prom_value(values[metric][db])}')
    return "\n".join(lines) + "\n"


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _timestamp(t: Any) -> float:
    if isinstance(t, dt.datetime):
        return round(t.timestamp(), 3)
    raise NotifyError("the event has no finish time")


class PrometheusNotifier(Notifier):
    type = "prometheus"
    default_on = ("success", "failure", "warning")
    allowed_on = ("success", "failure", "warning")

    def __init__(self, on: frozenset[str], keypath: str, *, path: Path) -> None:
        super().__init__(on, keypath)
        self.path = path

    def target(self) -> str:
        return str(self.path)

    def values(self, event: Event) -> dict[str, dict[str, float]]:
        values = read_prometheus(self.path)
        finished = _timestamp(event.finished)
        for d in event.databases:
            name, status = str(d.get("name", "")), d.get("status")
            if not name or status == "skipped":
                continue
            values["albackup_last_run_timestamp_seconds"][name] = finished
            values["albackup_last_run_success"][name] = 0.0 if status == "failed" else 1.0
            if status in ("backed up", "failed") and _number(d.get("seconds")) is not None:
                values["albackup_last_duration_seconds"][name] = _number(d.get("seconds"))  # type: ignore[assignment]
            if status == "backed up":
                values["albackup_last_success_timestamp_seconds"][name] = finished
                for metric, key in (("albackup_last_backup_bytes", "bytes"), ("albackup_last_backup_rows", "rows")):
                    if _number(d.get(key)) is not None:
                        values[metric][name] = _number(d.get(key))  # type: ignore[assignment]
        return values

    def send(self, event: Event) -> None:
        _write_atomic(self.path, format_prometheus(self.values(event)))


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path`` (a name node_exporter ignores), then rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------- apprise

class AppriseNotifier(Notifier):
    type = "apprise"

    def __init__(self, on: frozenset[str], keypath: str, *, urls: list[SecretSource]) -> None:
        super().__init__(on, keypath)
        self._urls = [_Sourced(u) for u in urls]

    def target(self) -> str:
        schemes = [urlsplit(u.known).scheme for u in self._urls if u.known and "://" in u.known]
        return ", ".join(dict.fromkeys(schemes)) if schemes else f"{len(self._urls)} URL{_s(len(self._urls))}"

    def secrets(self) -> list[str]:
        return [u.known for u in self._urls if u.known]

    def send(self, event: Event) -> None:
        try:
            import apprise  # type: ignore[import-not-found]
        except ImportError:
            raise NotifyError("the apprise package is not installed (pip install apprise)") from None
        ap = apprise.Apprise()
        for u in self._urls:
            if not ap.add(u.get()):
                raise NotifyError(f"{u.source.where}: apprise does not accept the URL from {u.source.describe()}")
        types = getattr(apprise, "NotifyType", None)
        kind = {"success": "SUCCESS", "failure": "FAILURE", "warning": "WARNING", "stale": "WARNING"}[event.kind]
        notify_type = getattr(types, kind, kind.lower()) if types is not None else kind.lower()
        known = self.secrets()
        if not ap.notify(body=format_text(event, known), title=mask_secrets(_one_line(event.title), known),
                         notify_type=notify_type):
            raise NotifyError("apprise could not deliver to every URL (its log says which)")


# ----------------------------------------------------------------------------------- config

COMMON_KEYS = frozenset({"type", "on"})
TYPE_KEYS: dict[str, frozenset[str]] = {
    "email": frozenset({"host", "port", "security", "username", "password", "from", "to", "success_to",
                        "failure_to", "warning_to", "stale_to", "timeout", "tls_verify", "ca_file"}),
    "slack": frozenset({"url", "timeout"}),
    "webhook": frozenset({"url", "headers", "timeout"}),
    "flag_file": frozenset({"path"}),
    "prometheus": frozenset({"path"}),
    "apprise": frozenset({"urls"}),
}
SECURITIES = ("none", "starttls", "ssl")
_SOURCE_HINT = "{env: NAME}, {file: PATH}, {fd: N} or {command: CMD}"


def notifiers_from_mapping(d: Any, keypath: str, base_dir: Path) -> list[Notifier]:
    """The notifiers of the config's ``notifications:`` list (None: none). ConfigError for a bad
    shape, unknown keys, or a secret written in plain text."""
    if d is None:
        return []
    if not isinstance(d, list):
        raise ConfigError(f"{keypath}: expected a list of notifiers (each a mapping with `type`)")
    base_dir = Path(base_dir)
    return [_notifier(entry, f"{keypath}[{i}]", base_dir) for i, entry in enumerate(d)]


def _notifier(d: Any, keypath: str, base_dir: Path) -> Notifier:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{keypath}: expected a mapping with `type` ({', '.join(TYPE_KEYS)})")
    if True in d:   # YAML 1.1 (PyYAML) reads an unquoted `on:` key as the boolean true
        if "on" in d:
            raise ConfigError(f"{keypath}.on: given twice")
        d = {("on" if k is True else k): v for k, v in d.items()}
    kind = d.get("type")
    if kind not in TYPE_KEYS:
        hint = _suggest(kind, TYPE_KEYS) if isinstance(kind, str) else ""
        raise ConfigError(f"{keypath}.type: expected one of {', '.join(TYPE_KEYS)}, got {kind!r}{hint}")
    allowed = COMMON_KEYS | TYPE_KEYS[kind]
    for key in d:
        if key not in allowed:
            raise ConfigError(f"{keypath}.{key}: unknown key for a {kind} notifier{_suggest(str(key), allowed)}; "
                              f"expected one of {', '.join(sorted(allowed))}")
    builder = {"email": _email, "slack": _slack, "webhook": _webhook, "flag_file": _flag_file,
               "prometheus": _prometheus, "apprise": _apprise}[kind]
    return builder(d, keypath, base_dir)


def _suggest(word: Any, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _on(d: Mapping, keypath: str, cls: type[Notifier]) -> frozenset[str]:
    value = d.get("on")
    if value is None:
        return frozenset(cls.default_on)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{keypath}.on: expected a non-empty list of {', '.join(cls.allowed_on)}")
    for item in items:
        if item not in cls.allowed_on:
            why = ""
            if item in KINDS:
                why = {"flag_file": " (a flag touched on failure would hide it)",
                       "prometheus": " (stale comes from `check`, which is not a run)"}.get(cls.type, "")
            raise ConfigError(f"{keypath}.on: {item!r} is not allowed for {cls.type}{why}; expected "
                              f"{', '.join(cls.allowed_on)}")
    return frozenset(items)


def _str(d: Mapping, key: str, keypath: str, default: str | None = None, *, required: bool = False) -> str | None:
    value = d.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{keypath}.{key}: is required")
        return default
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{keypath}.{key}: expected a non-empty string")
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{keypath}.{key}: must be one line")
    return value.strip()


def _timeout(d: Mapping, keypath: str, default: float) -> float:
    value = d.get("timeout", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 600:
        raise ConfigError(f"{keypath}.timeout: expected a number of seconds above 0, at most 600")
    return float(value)


def _bool(d: Mapping, key: str, keypath: str, default: bool) -> bool:
    value = d.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{keypath}.{key}: expected true or false")
    return value


def _path(d: Mapping, key: str, keypath: str, base_dir: Path, *, required: bool = True) -> Path | None:
    value = _str(d, key, keypath, required=required)
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base_dir / p


def _secret(value: Any, keypath: str, base_dir: Path, what: str) -> SecretSource:
    if isinstance(value, str):
        raise ConfigError(f"{keypath}: {what} is never written in the config; give {_SOURCE_HINT}")
    src = from_mapping(value, keypath)
    if src.file and not Path(os.path.expanduser(src.file)).is_absolute():
        src = dataclasses.replace(src, file=str(base_dir / src.file))
    return src


def _addresses(d: Mapping, key: str, keypath: str) -> tuple[str, ...]:
    value = d.get(key)
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{keypath}.{key}: expected a non-empty list of e-mail addresses")
    for i, item in enumerate(items):
        _address(item, f"{keypath}.{key}[{i}]")
    return tuple(items)


def _address(value: Any, keypath: str) -> str:
    if not isinstance(value, str) or "\n" in value or "\r" in value or "@" not in parseaddr(value)[1]:
        raise ConfigError(f"{keypath}: expected an e-mail address (name@example.com), got {value!r}"
                          if isinstance(value, str) else f"{keypath}: expected an e-mail address")
    return value


def _email(d: Mapping, keypath: str, base_dir: Path) -> EmailNotifier:
    on = _on(d, keypath, EmailNotifier)
    host = _str(d, "host", keypath, required=True)
    security = d.get("security", "starttls")
    if security not in SECURITIES:
        raise ConfigError(f"{keypath}.security: expected one of {', '.join(SECURITIES)}, got {security!r}")
    port = d.get("port", SMTP_PORTS[security])
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{keypath}.port: expected a port number (1-65535)")
    username = _str(d, "username", keypath)
    password = None if d.get("password") is None else _secret(d["password"], f"{keypath}.password", base_dir,
                                                              "an SMTP password")
    if (username is None) != (password is None):
        raise ConfigError(f"{keypath}: give both username and password, or neither")
    if username is not None and security == "none":
        raise ConfigError(f"{keypath}.security: a password is not sent over an unencrypted connection; "
                          "use starttls or ssl")
    sender = _address(d.get("from"), f"{keypath}.from") if d.get("from") is not None else None
    if sender is None:
        raise ConfigError(f"{keypath}.from: is required (the sender address)")
    recipients = {"to": _addresses(d, "to", keypath)}
    for kind in KINDS:
        recipients[kind] = _addresses(d, f"{kind}_to", keypath)
    for kind in sorted(on):
        if not recipients[kind] and not recipients["to"]:
            raise ConfigError(f"{keypath}.to: no recipients for {kind} events (give to or {kind}_to)")
    ca_file = _path(d, "ca_file", keypath, base_dir, required=False)
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(f"{keypath}.ca_file: {ca_file} is not a file")
    return EmailNotifier(on, keypath, host=host, port=port, security=security,  # type: ignore[arg-type]
                         username=username, password=password, sender=sender, recipients=recipients,
                         timeout=_timeout(d, keypath, SMTP_TIMEOUT),
                         tls_verify=_bool(d, "tls_verify", keypath, True),
                         ca_file=str(ca_file) if ca_file else None)


def _slack(d: Mapping, keypath: str, base_dir: Path) -> SlackNotifier:
    if d.get("url") is None:
        raise ConfigError(f"{keypath}.url: is required ({_SOURCE_HINT})")
    url = _secret(d["url"], f"{keypath}.url", base_dir, "a Slack webhook URL (it is a token)")
    return SlackNotifier(_on(d, keypath, SlackNotifier), keypath, url=url,
                         timeout=_timeout(d, keypath, HTTP_TIMEOUT))


def _plain_url(value: str, keypath: str) -> str:
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"{keypath}: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{keypath}: expected an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ConfigError(f"{keypath}: the URL has credentials in it; give the whole URL as a secret "
                          f"source ({_SOURCE_HINT}) or put them in a header")
    if parts.query and _QUERY_TOKEN.search("?" + parts.query):
        raise ConfigError(f"{keypath}: the URL seems to carry a token; give it as a secret source ({_SOURCE_HINT})")
    return value.strip()


def _webhook(d: Mapping, keypath: str, base_dir: Path) -> WebhookNotifier:
    raw = d.get("url")
    if raw is None:
        raise ConfigError(f"{keypath}.url: is required (an http(s) URL, or a secret source {_SOURCE_HINT})")
    url: str | SecretSource = (_plain_url(raw, f"{keypath}.url") if isinstance(raw, str)
                               else _secret(raw, f"{keypath}.url", base_dir, "the URL"))
    headers_in = d.get("headers") or {}
    if not isinstance(headers_in, Mapping):
        raise ConfigError(f"{keypath}.headers: expected a mapping of header name to value")
    headers: dict[str, str | SecretSource] = {}
    for name, value in headers_in.items():
        kp = f"{keypath}.headers.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{keypath}.headers: {name!r} is not a valid header name")
        if isinstance(value, str):
            if _SECRETISH.search(name):
                raise ConfigError(f"{kp}: looks like a secret; give it as {_SOURCE_HINT}")
            if "\n" in value or "\r" in value:
                raise ConfigError(f"{kp}: must be one line")
            headers[name] = value
        elif isinstance(value, Mapping):
            headers[name] = _secret(value, kp, base_dir, "a secret header")
        else:
            raise ConfigError(f"{kp}: expected a string or a secret source ({_SOURCE_HINT})")
    return WebhookNotifier(_on(d, keypath, WebhookNotifier), keypath, url=url, headers=headers,
                           timeout=_timeout(d, keypath, HTTP_TIMEOUT))


def _flag_file(d: Mapping, keypath: str, base_dir: Path) -> FlagFileNotifier:
    return FlagFileNotifier(_on(d, keypath, FlagFileNotifier), keypath,
                            path=_path(d, "path", keypath, base_dir))  # type: ignore[arg-type]


def _prometheus(d: Mapping, keypath: str, base_dir: Path) -> PrometheusNotifier:
    path = _path(d, "path", keypath, base_dir)
    assert path is not None
    if path.suffix != ".prom":
        raise ConfigError(f"{keypath}.path: node_exporter's textfile collector reads only *.prom files; "
                          f"got {path.name}")
    return PrometheusNotifier(_on(d, keypath, PrometheusNotifier), keypath, path=path)


def _apprise(d: Mapping, keypath: str, base_dir: Path) -> AppriseNotifier:
    value = d.get("urls")
    items = [value] if isinstance(value, (Mapping, str)) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{keypath}.urls: expected a list of secret sources ({_SOURCE_HINT})")
    urls = [_secret(u, f"{keypath}.urls[{i}]", base_dir, "an apprise URL (it holds tokens)")
            for i, u in enumerate(items)]
    return AppriseNotifier(_on(d, keypath, AppriseNotifier), keypath, urls=urls)
