"""Mail: dunning messages sent by SMTP from the dunning outbox (SPEC 11).

- `smtp.py`: `SmtpTransport(settings.smtp, password)` (STARTTLS or TLS, login, one connection
  per run; a `Transport` of `orchestration.billing.dunning.run`), `smtp_transport(smtp)` (the
  password from `settings.smtp.password_env`), `smtp_password(name)`, `MailConfigError`.
"""

from integrations.mail.smtp import MailConfigError, SmtpTransport, smtp_password, smtp_transport

__all__ = ["MailConfigError", "SmtpTransport", "smtp_password", "smtp_transport"]
