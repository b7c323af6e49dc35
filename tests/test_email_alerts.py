"""Alerts by email, through a real SMTP server (aiosmtpd) started by the test, with STARTTLS (a
certificate made by openssl in the test) and AUTH; one that offers no STARTTLS (the password is never
sent); and one that accepts a connection and never answers."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import threading
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from structlog.testing import capture_logs

from supervisor.config import AlertSettings, ConfigError, WorkerSettings, load_settings, validate
from supervisor.observe.alerts import Alerts
from tests.fakes import fake_worker_command, make_settings, make_video
from tests.test_observability import _run_observed


class Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "message": message_from_bytes(envelope.content)})
        return "250 OK"


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def smtp_server(inbox: Inbox, tls: tuple[Path, Path] | None = None) -> Controller:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"alerts", b"SECRET-PASS")
        if ok:
            inbox.logins.append(data.login.decode())
        return AuthResult(success=ok)

    with socket.socket() as probe:  # a free port: aiosmtpd checks its server by connecting to the one given
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=check, tls_context=context,
                            require_starttls=tls is not None, auth_require_tls=tls is not None)
    controller.start()
    return controller


def port_of(controller: Controller) -> int:
    return int(controller.port)


def test_a_dead_job_mails_the_recipients_once_per_interval_and_never_logs_the_password(tmp_path: Path) -> None:
    for i in range(3):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_10{i:02d}00.mp4")
    inbox = Inbox()
    cert, key = certificate(tmp_path)
    controller = smtp_server(inbox, (cert, key))
    url = f"smtp://alerts:SECRET-PASS@127.0.0.1:{port_of(controller)}"
    try:
        s = make_settings(tmp_path, worker=WorkerSettings(command=fake_worker_command("--exit", "65")))
        alerts = Alerts(AlertSettings(smtp=url, email_to=("ops@example.com", "boss@example.com"),
                                      email_from="vs@example.com", min_interval_seconds=3600, timeout_seconds=5,
                                      smtp_ca_file=str(cert)))
        with capture_logs() as logs:
            code, _ = _run_observed(s, alerts)
    finally:
        controller.stop()
    assert code == 1
    [mail] = inbox.messages  # three dead jobs, one alert in the interval
    assert inbox.logins == ["alerts"]
    assert mail["from"] == "vs@example.com" and mail["to"] == ["ops@example.com", "boss@example.com"]
    msg = mail["message"]
    assert msg["Subject"].startswith(f"video-supervisor on {socket.gethostname()}: job dead (cam)")
    body = msg.get_payload(decode=True).decode()
    details = json.loads(body[body.index("{"):])
    assert details["kind"] == "job_dead" and "exit 65" in details["error"] and "camera: cam" in body
    assert alerts.sent == 1
    assert not any("SECRET" in json.dumps(e, default=str) for e in logs)
    assert any(e["event"] == "alert_sent" and e["endpoint"] == f"smtp://127.0.0.1:{port_of_url(url)}/…"
               for e in logs)


def until_failed(settings: AlertSettings, kind: str, **fields: Any) -> tuple[Alerts, list[dict[str, Any]]]:
    """One alert sent until its delivery is given up on (the event, not a clock; capped for a broken build),
    and what was logged meanwhile."""
    async def main() -> Alerts:
        alerts = Alerts(settings)
        await alerts.start(None)  # type: ignore[arg-type]
        alerts.alert(kind, **fields)
        while not alerts.failed:
            await asyncio.sleep(0.05)
        await alerts.stop()
        return alerts

    with capture_logs() as logs:
        alerts = asyncio.run(asyncio.wait_for(main(), 30))
    return alerts, logs


def port_of_url(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_a_password_is_never_sent_to_a_server_that_offers_no_starttls(tmp_path: Path) -> None:
    inbox = Inbox()
    controller = smtp_server(inbox)  # plain: no STARTTLS (as when someone between strips it)
    url = f"smtp://alerts:SECRET-PASS@127.0.0.1:{port_of(controller)}"

    try:
        alerts, logs = until_failed(AlertSettings(smtp=url, email_to=("ops@example.com",), timeout_seconds=5,
                                                  max_retries=0), "job_dead", camera="cam")
    finally:
        controller.stop()
    assert alerts.failed == 1 and inbox.logins == [] and inbox.messages == []
    [failed] = [e for e in logs if e["event"] == "alert_failed"]
    assert "STARTTLS" in failed["error"] or "TLS" in failed["error"], failed
    assert "SECRET" not in json.dumps(failed)


def test_a_mail_server_that_never_answers_costs_one_deadline_a_try_and_is_logged_without_its_password() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never says a word
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    url = f"smtp://alerts:SECRET-PASS@127.0.0.1:{silent.getsockname()[1]}"

    try:
        alerts, logs = until_failed(AlertSettings(smtp=url, email_to=("ops@example.com",), timeout_seconds=0.3,
                                                  max_retries=1, retry_backoff_seconds=0.05),
                                    "gpu_critical", gpu=0, previous="warm", reason="83 C")
    finally:
        stop.set()
        for conn in held:
            conn.close()
        silent.close()
    assert alerts.failed == 1 and alerts.sent == 0
    [failed] = [e for e in logs if e["event"] == "alert_failed"]
    assert failed["attempts"] == 2 and "timed out" in failed["error"] and "SECRET" not in json.dumps(failed)


@pytest.mark.parametrize(("alerts", "blamed"), [
    ('email_to = ["ops@example.com"]', "alerts.smtp: email alerts need both"),
    ('smtp = "smtp://mail.example.com"', "alerts.email_to: email alerts need both"),
    ('smtp = "http://u:SECRET@mail.example.com"\nemail_to = ["ops@example.com"]', "alerts.smtp: must be smtp://"),
    ('smtp = "smtp://mail.example.com"\nemail_to = ["ops@example.com, boss@example.com"]',
     "alerts.email_to[0]: 'ops@example.com, boss@example.com' is not one email address"),
])
def test_email_settings_that_cannot_work_are_refused_in_one_line(tmp_path: Path, alerts: str, blamed: str) -> None:
    path = tmp_path / "vs.toml"
    path.write_text(f'videos_dir = "videos"\n[alerts]\n{alerts}\n')
    with pytest.raises(ConfigError) as caught:
        validate(load_settings(path))
    assert blamed in str(caught.value) and "SECRET" not in str(caught.value)


def test_a_line_break_in_what_an_alert_says_never_reaches_a_mail_header() -> None:
    from supervisor.observe.alerts import email_message

    payload = {"kind": "run_halted", "host": "gpu-host-1", "reason": "worker exit 78:\r\nInjected: yes\rprogress"}
    msg = email_message(payload, "vs@example.com", ("ops@example.com",))
    assert msg["Subject"] == "video-supervisor on gpu-host-1: run halted (worker exit 78: Injected: yes progress)"
    assert "Injected" not in str(msg["To"]) and msg["To"] == "ops@example.com"
