#!/usr/bin/env python3
"""Evaluate a webhook mapping from the bridge's blueprint the way Authentik does, offline.

    run_mapping.py SHAPE [--with-diff] [--mapping body|headers] [--blueprint PATH]

SHAPE picks the event that `notification.event` holds (docs/src/upstream/authentik.md §4.6, §3.5, §12):
    group-created, group-updated, group-deleted, user-created, user-updated, user-deleted,
    test        the transport's Test button (action custom_notification_test, no model),
    no-event    notification.event is None.
--with-diff adds the `diff` an enterprise licence puts in the context (docs/src/upstream/authentik.md §4.3); the default is the
unlicensed event, without one.

The mapping's expression is wrapped as a function body with `user`, `request` and `notification`
as its parameters (docs/src/upstream/authentik.md §3.2), its return value goes through the rules of Authentik's `sanitize_item`
(docs/src/upstream/authentik.md §3.3), and the result is printed as Authentik's HTTP client would encode it: `json.dumps` with
default settings (docs/src/upstream/authentik.md §12). Only the standard library is used, so CI needs no PyYAML: the blueprint is
read by a small reader that understands just what the mapping entries use (block scalars,
`!Format` with `%` arguments, `!Env [NAME, default]`). Exit status 2 means bad arguments or a
blueprint this reader cannot follow; an exception raised by the mapping itself propagates.
"""

import argparse
import datetime
import enum
import json
import os
import re
import sys
import uuid
from pathlib import Path

DEFAULT_BLUEPRINT = Path(__file__).resolve().parents[2] / "authentik-blueprints" / "outline-bridge.yaml"
MAPPING_MODEL = "authentik_events.notificationwebhookmapping"
MAPPING_IDS = {"body": "authentik-bridge-body", "headers": "authentik-bridge-headers"}


class BlueprintError(Exception):
    """The blueprint does not have the shape this reader understands."""


# ---------------------------------------------------------------- reading the blueprint


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def block_scalar(lines, start, parent_indent, header):
    """Read a `|` block scalar whose header line is lines[start - 1]; return (text, next index).

    Follows YAML's rules for the forms a blueprint uses: the indentation of the first non-blank
    line is the block's, blank lines are kept, and the chomping indicator (`|` clip, `|-` strip,
    `|+` keep) decides the trailing newlines.
    """
    if not re.fullmatch(r"\|[-+]?", header):
        raise BlueprintError(f"unsupported block scalar header {header!r}")
    chomp = header[1:]
    body = []
    block_indent = None
    i = start
    while i < len(lines):
        line = lines[i]
        if line.strip() == "":
            body.append("")
            i += 1
            continue
        ind = indent_of(line)
        if block_indent is None:
            if ind <= parent_indent:
                break
            block_indent = ind
        if ind < block_indent:
            break
        body.append(line[block_indent:])
        i += 1
    trailing = 0
    while body and body[-1] == "":
        body.pop()
        trailing += 1
    text = "\n".join(body)
    if chomp == "-" or not body:
        return text, i
    return text + "\n" + ("\n" * trailing if chomp == "+" else ""), i


def flow_scalar(text):
    """A plain, single- or double-quoted scalar inside a flow sequence."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return json.loads(text)
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text


def resolve_env(value):
    """`!Env NAME` or `!Env [NAME, default]`: the variable if non-empty, else the default (docs/src/upstream/authentik.md §6.3)."""
    m = re.fullmatch(r"\[(.*),(.*)\]", value.strip())
    if m:
        name, default = flow_scalar(m.group(1)), flow_scalar(m.group(2))
    else:
        name, default = flow_scalar(value), None
    return os.environ.get(name) or default


def tagged_value(text):
    """Resolve one `- ...` item of a `!Format` sequence that is not a block scalar."""
    text = text.strip()
    if text.startswith("!Env"):
        return resolve_env(text[len("!Env"):])
    if text.startswith("!"):
        raise BlueprintError(f"unsupported tag in !Format arguments: {text}")
    return flow_scalar(text)


def read_expression(lines, i, key_indent):
    """Read the value of `expression:` at lines[i]: a block scalar or a `!Format` sequence."""
    value = lines[i].split(":", 1)[1].strip()
    if value.startswith("|"):
        return block_scalar(lines, i + 1, key_indent, value)[0]
    if value != "!Format":
        raise BlueprintError(f"unsupported expression value {value!r}")
    items = []
    j = i + 1
    while j < len(lines):
        line = lines[j]
        if line.strip() == "":
            j += 1
            continue
        if indent_of(line) <= key_indent or not line.lstrip().startswith("- "):
            break
        item_indent = indent_of(line)
        item = line.strip()[2:].strip()
        if item.startswith("|"):
            text, j = block_scalar(lines, j + 1, item_indent, item)
            items.append(text)
        else:
            items.append(tagged_value(item))
            j += 1
    if not items:
        raise BlueprintError("!Format without a format string")
    try:
        return items[0] % tuple(items[1:])
    except (TypeError, ValueError) as exc:
        raise BlueprintError(f"!Format failed: {exc}") from exc


def mapping_expression(blueprint_text, entry_id):
    """The stored expression of the mapping entry whose `id` is entry_id, as an import leaves it."""
    lines = blueprint_text.splitlines()
    entry_starts = [n for n, line in enumerate(lines) if re.match(r"^\s*- model:\s", line)]
    for pos, start in enumerate(entry_starts):
        end = entry_starts[pos + 1] if pos + 1 < len(entry_starts) else len(lines)
        entry = lines[start:end]
        model = entry[0].split(":", 1)[1].strip()
        ids = [line.split(":", 1)[1].strip() for line in entry if re.match(r"^\s*id:\s", line)]
        if model != MAPPING_MODEL or ids != [entry_id]:
            continue
        for n, line in enumerate(entry):
            if re.match(r"^\s*expression:", line):
                return read_expression(entry, n, indent_of(line))
        raise BlueprintError(f"entry {entry_id} has no expression")
    raise BlueprintError(f"no {MAPPING_MODEL} entry with id {entry_id}")


# ---------------------------------------------------------------- Authentik's objects, stubbed


class StubModel:
    """A Django model instance as `sanitize_item` sees it (docs/src/upstream/authentik.md §3.3)."""

    def __init__(self, app, model_name, pk, name):
        self.app, self.model_name, self.pk, self.name = app, model_name, pk, name


class StubUser(StubModel):
    def __init__(self, pk, username, email, name=""):
        super().__init__("authentik_core", "user", pk, name)
        self.username, self.email = username, email


class StubEvent(StubModel):
    """`notification.event`: the saved Event row, shaped like docs/src/upstream/authentik.md §4.6."""

    def __init__(self, action, app, context, user, created):
        super().__init__("authentik_events", "event", uuid.uuid4(), None)
        self.action, self.app, self.context, self.user, self.created = action, app, context, user, created
        self.client_ip = "192.0.2.10"
        self.brand = {"pk": "fcba828076b94dedb2d5a6b4c5556fa1", "app": "authentik_brands",
                      "name": "Default brand", "model_name": "brand"}
        self.expires = created + datetime.timedelta(days=365)

    def __str__(self):
        return f"Event action={self.action} user={self.user} context={self.context}"


class StubNotification(StubModel):
    """The unsaved Notification that the transport task builds (docs/src/upstream/authentik.md §3.2)."""

    def __init__(self, event, user):
        super().__init__("authentik_events", "notification", uuid.uuid4(), None)
        self.event, self.user = event, user
        self.severity = "notice"
        self.body = f"{event.action}: {event.context}" if event else ""
        self.hyperlink = None
        self.hyperlink_label = None
        self.seen = False


class StubPolicyRequest:
    """`request`: a PolicyRequest whose context carries the notification (docs/src/upstream/authentik.md §3.2)."""

    def __init__(self, user, obj, notification):
        self.user, self.obj, self.http_request = user, obj, None
        self.context = {"notification": notification}
        self.debug = False


ACTOR = {"pk": 5, "email": "admin@example.com", "username": "akadmin"}
CREATED = datetime.datetime(2026, 10, 21, 12, 34, 56, 789012, tzinfo=datetime.timezone.utc)
GROUP = {"pk": "3b9f1d6e0c8e4a0f9d7b5c3a1e2f4d6c", "app": "authentik_core", "name": "wiki-editors",
         "model_name": "group"}
USER = {"pk": 42, "app": "authentik_core", "name": "Jane Doe", "model_name": "user"}
DIFFS = {
    "group": {"users": {"add": [42]}},
    "user": {"is_active": {"previous_value": True, "new_value": False}},
}
SHAPES = ("group-created", "group-updated", "group-deleted", "user-created", "user-updated",
          "user-deleted", "test", "no-event")


def http_request(model):
    pk = model["pk"]
    path = (f"/api/v3/core/groups/{uuid.UUID(pk)}/" if model["model_name"] == "group"
            else f"/api/v3/core/users/{pk}/")
    return {"args": {}, "path": path, "method": "PATCH", "request_id": uuid.uuid4().hex,
            "user_agent": "python-requests/2.33.0"}


def make_event(shape, with_diff):
    """The event for SHAPE; keys in the jsonb order a stored event comes back in (docs/src/upstream/authentik.md §12)."""
    if shape == "no-event":
        return None
    if shape == "test":
        # The Test button: the actor goes into the context, event.user stays empty (docs/src/upstream/authentik.md §3.5).
        return StubEvent("custom_notification_test", "authentik.events.api.notification_transports",
                         {"user": dict(ACTOR), "context": {"foo": "bar"}}, {}, CREATED)
    kind, _, verb = shape.partition("-")
    model = dict(GROUP if kind == "group" else USER)
    context = {"model": model, "http_request": http_request(model)}
    if with_diff:
        context["diff"] = DIFFS[kind]
    return StubEvent(f"model_{verb}", "authentik.events.middleware", context, dict(ACTOR), CREATED)


# ---------------------------------------------------------------- evaluation and sanitizing


def evaluate(expression, **variables):
    """Run the expression as the body of a function whose parameters are the variables (docs/src/upstream/authentik.md §3.2)."""
    params = ", ".join(variables)
    source = f"def handler({params}):\n"
    source += "".join(f"    {line}\n" for line in expression.splitlines())
    source += f"result = handler({params})\n"
    scope = dict(variables)
    exec(compile(source, "mapping", "exec"), {}, scope)  # noqa: S102 -- the project's own blueprint
    return scope["result"]


def sanitize(value):
    """What Authentik's sanitize_item makes of a mapping's return value (docs/src/upstream/authentik.md §3.3)."""
    if isinstance(value, dict):
        return {key: sanitize(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [item for item in (sanitize(v) for v in value) if item]
    if isinstance(value, StubUser):
        return {"username": value.username, "pk": value.pk, "email": value.email}
    if isinstance(value, StubModel):
        return sanitize({"app": value.app, "model_name": value.model_name, "pk": value.pk,
                         "name": value.name if value.name is not None else str(value)})
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value.total_seconds())
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", choices=SHAPES)
    parser.add_argument("--with-diff", action="store_true")
    parser.add_argument("--mapping", choices=sorted(MAPPING_IDS), default="body")
    parser.add_argument("--blueprint", type=Path, default=DEFAULT_BLUEPRINT)
    args = parser.parse_args(argv)
    try:
        expression = mapping_expression(args.blueprint.read_text(encoding="utf-8"),
                                        MAPPING_IDS[args.mapping])
    except (OSError, BlueprintError) as exc:
        print(f"run_mapping: {args.blueprint}: {exc}", file=sys.stderr)
        return 2
    recipient = StubUser(ACTOR["pk"], ACTOR["username"], ACTOR["email"])
    mapping = StubModel("authentik_events", "notificationwebhookmapping", uuid.uuid4(), args.mapping)
    notification = StubNotification(make_event(args.shape, args.with_diff), recipient)
    result = evaluate(expression, user=recipient,
                      request=StubPolicyRequest(recipient, mapping, notification),
                      notification=notification)
    print(json.dumps(sanitize(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
