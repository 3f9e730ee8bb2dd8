"""The catalog's dunning and SMTP settings and its dunning templates (SPEC 11): a valid catalog
loads with its defaults; every mistake is named with its file, line and path, before anything
runs; the password itself never belongs in the catalog."""

from __future__ import annotations

from decimal import Decimal

import pytest
from catalog_texts import issues_of as _issues_of
from catalog_texts import load_text

from orchestration.catalog.loader import load_catalog_cached
from orchestration.catalog.models import DUNNING_TEMPLATES, is_loopback_host, mail_recipients


def issues_of(tmp_path, text: str) -> list[str]:
    """The issues, with file names relative to the test's folder (the catalog folder)."""
    return [issue.removeprefix(f"{tmp_path.name}/") for issue in _issues_of(tmp_path, text)]


BASE = """
customers:
  - {id: acme, currency: USD, email: "billing@acme.test, ap@acme.test"}
  - {id: acme-labs, parent_id: acme}
  - {id: globex, currency: EUR}
settings:
  dunning:
    reminder_days: [1, 7, 14]
    final_notice_days: 30
    min_amount: "1.00"
    from: "Billing <billing@example.com>"
    reply_to: ar@example.com
  smtp:
    host: smtp.example.com
    port: 2587
    security: starttls
    username: billing@example.com
    password_env: METERBOOK_SMTP_PASSWORD
    timeout_seconds: 10
"""


def test_dunning_and_smtp_settings_load(tmp_path):
    settings = load_text(tmp_path, BASE).settings
    dunning, smtp = settings.dunning, settings.smtp
    assert dunning.reminder_days == [1, 7, 14] and dunning.final_notice_days == 30
    assert dunning.min_amount == Decimal("1.00") and isinstance(dunning.min_amount, Decimal)
    assert dunning.from_address == "Billing <billing@example.com>"  # `from` in YAML
    assert dunning.reply_to == "ar@example.com"
    assert (smtp.host, smtp.effective_port, smtp.security) == ("smtp.example.com", 2587, "starttls")
    assert (smtp.username, smtp.password_env) == ("billing@example.com", "METERBOOK_SMTP_PASSWORD")
    assert smtp.timeout_seconds == Decimal(10)


def test_defaults_and_ports(tmp_path):
    text = """
settings:
  dunning: {from: billing@example.com}
  smtp: {host: 127.0.0.1, security: none}
"""
    settings = load_text(tmp_path, text).settings
    assert settings.dunning.reminder_days == [1, 7, 14]
    assert settings.dunning.final_notice_days == 30
    assert settings.dunning.min_amount == Decimal("1.00")
    assert settings.smtp.effective_port == 25 and settings.smtp.username is None
    for security, port in (("starttls", 587), ("ssl", 465)):
        smtp = settings.smtp.model_copy(update={"security": security, "host": "mx.example.com"})
        assert smtp.effective_port == port


def test_without_dunning_there_is_none_and_emails_are_not_checked(tmp_path):
    text = BASE[: BASE.index("settings:")].replace("billing@acme.test, ap@acme.test", "n/a")
    settings = load_text(tmp_path, text).settings
    assert settings.dunning is None and settings.smtp is None


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("[1, 7, 14]", "[1, 14, 7]", "catalog.yaml:8: settings.dunning.reminder_days: reminder_days must be listed in increasing order without repeats: 7 comes after 14"),
        ("[1, 7, 14]", "[0, 7]", "catalog.yaml:8: settings.dunning.reminder_days[0]: Input should be greater than or equal to 1"),
        ("final_notice_days: 30", "final_notice_days: 14", "catalog.yaml:9: settings.dunning.final_notice_days: final_notice_days (14) must be after the last of reminder_days (14)"),
        ("    final_notice_days: 30\n", "    reminder_days_typo: 1\n", "catalog.yaml:9: settings.dunning.reminder_days_typo: Extra inputs are not permitted"),
        ('min_amount: "1.00"', 'min_amount: "-0.01"', "catalog.yaml:10: settings.dunning.min_amount: Input should be greater than or equal to 0"),
        ('from: "Billing <billing@example.com>"', "from: billing", "catalog.yaml:11: settings.dunning.from: 'billing' is not one mail address (like billing@example.com)"),
        ('from: "Billing <billing@example.com>"', 'from: "a@example.com, b@example.com"', "catalog.yaml:11: settings.dunning.from: 'a@example.com, b@example.com' is not one mail address (like billing@example.com)"),
        ('    from: "Billing <billing@example.com>"\n', "", "catalog.yaml:8: settings.dunning.from: Field required"),
        ("reply_to: ar@example.com", 'reply_to: "ar@example.com\\nBcc: x@evil.test"', "catalog.yaml:12: settings.dunning.reply_to: a mail address cannot contain a line break"),
        ("host: smtp.example.com", "host: smtp.example.com/x", "catalog.yaml:14: settings.smtp.host: String should match pattern '^[A-Za-z0-9._:\\[\\]-]+$'"),
        ("port: 2587", "port: 70000", "catalog.yaml:15: settings.smtp.port: Input should be less than or equal to 65535"),
        ("security: starttls", "security: tls", "catalog.yaml:16: settings.smtp.security: Input should be 'starttls', 'ssl' or 'none'"),
        ("security: starttls", "security: none", "catalog.yaml:16: settings.smtp.security: security: none sends mail in clear text; allowed only to this machine (localhost, 127.0.0.1, ::1), not 'smtp.example.com': use starttls or ssl"),
        ("password_env: METERBOOK_SMTP_PASSWORD", "password_env: not a name", "catalog.yaml:18: settings.smtp.password_env: String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'"),
        ("    password_env: METERBOOK_SMTP_PASSWORD\n", "", "catalog.yaml:14: settings.smtp: give both username and password_env to log in, or neither"),
        ("password_env: METERBOOK_SMTP_PASSWORD", "password: hunter2", "catalog.yaml:14: settings.smtp: the password is never written in the catalog: put it in an environment variable and name that variable in password_env"),
        ('email: "billing@acme.test, ap@acme.test"', "email: billing at acme", "catalog.yaml:3: customers[acme].email: 'billing at acme' is not a mail address (settings.dunning sends reminders to it); give one or more addresses separated by commas"),
    ],
)  # fmt: skip
def test_each_mistake_is_named_with_file_line_and_path(tmp_path, old, new, expected):
    assert BASE.count(old) == 1, old
    assert issues_of(tmp_path, BASE.replace(old, new)) == [expected]


def test_no_step_at_all_is_an_error(tmp_path):
    text = BASE.replace("[1, 7, 14]", "[]").replace(
        "final_notice_days: 30", "final_notice_days: null"
    )
    assert issues_of(tmp_path, text) == [
        "catalog.yaml:8: settings.dunning: dunning needs reminder_days or final_notice_days: "
        "nothing to send"
    ]


def test_a_default_final_notice_before_the_last_reminder_is_an_error(tmp_path):
    text = BASE.replace("[1, 7, 14]", "[1, 45]").replace("    final_notice_days: 30\n", "")
    assert issues_of(tmp_path, text) == [
        "catalog.yaml:8: settings.dunning.final_notice_days: final_notice_days (30) must be "
        "after the last of reminder_days (45)"
    ]


def test_a_sub_accounts_email_is_not_where_reminders_go(tmp_path):
    text = BASE.replace(
        "{id: acme-labs, parent_id: acme}", '{id: acme-labs, parent_id: acme, email: "n/a"}'
    )
    assert load_text(tmp_path, text).settings.dunning is not None


def _templates(tmp_path):
    folder = tmp_path / "templates" / "dunning"
    folder.mkdir(parents=True)
    return folder


def test_template_overrides_are_checked_with_the_catalog(tmp_path):
    folder = _templates(tmp_path)
    (folder / "reminder.txt").write_text("Dear {{ customer.name }},\n{% if x %}\nno end\n")
    (folder / "reminder.htm").write_text("<p>typo in the name</p>")
    (folder / ".reminder.txt.swp").write_bytes(b"\x00editor")  # hidden: not the catalog's
    (folder / "subject.txt").write_bytes(b"\xff\xfe")
    names = ", ".join(DUNNING_TEMPLATES)
    assert issues_of(tmp_path, BASE) == [
        f"templates/dunning/reminder.htm: dunning template: not a dunning template name ({names})",
        "templates/dunning/reminder.txt:2: dunning template: invalid template: Unexpected end "
        "of template. Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. "
        "The innermost block that needs to be closed is 'if'.",
        "templates/dunning/subject.txt: dunning template: not UTF-8 text (invalid start byte)",
    ]


def test_valid_overrides_load_and_a_changed_one_is_read_again(tmp_path):
    folder = _templates(tmp_path)
    (folder / "reminder.txt").write_text("Pay {{ amount_due }}\n")
    (tmp_path / "catalog.yaml").write_text(BASE)
    assert load_catalog_cached(tmp_path).settings.dunning is not None
    (folder / "reminder.txt").write_text("Pay {{ amount_due }\n")  # broken since
    with pytest.raises(Exception, match="invalid template"):
        load_catalog_cached(tmp_path)  # a template change is a catalog change


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("billing@acme.test", ["billing@acme.test"]),
        ("Acme AP <ap@acme.test>, cfo@acme.test", ["ap@acme.test", "cfo@acme.test"]),
        ("billing at acme", []),
        ("ap@acme.test\r\nBcc: x@evil.test", []),
        ("", []),
    ],
)
def test_mail_recipients(value, expected):
    assert mail_recipients(value) == expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True),
     ("10.0.0.1", False), ("mail.example.com", False), ("localhost.example.com", False)],
)  # fmt: skip
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback
