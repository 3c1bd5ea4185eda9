#!/usr/bin/env python3
"""TEST DOUBLE -- NOT GRAFANA.

A stand-in for the small part of Grafana's HTTP API that irisctl's Grafana client uses, so that the
client can be tested on hosts where no Grafana image or package can be obtained. It imitates Grafana
11.6.3+/12.x's behaviour as its source shows it (status codes, message bodies, version locking, auth,
file provisioning in the background after the port opens, polling of dashboard files, persistence; the
legacy /api stores dashboard JSON as sent, in 12.x too); it renders no UI, queries no data source and
must never be deployed as a monitoring tool.

Run:  python3 standin.py [--host 0.0.0.0] [--port 3000] [--data DIR]
Prints "grafana-standin listening on HOST:PORT" once it accepts connections (--port 0: a free port),
then "grafana-standin provisioned" once the first provisioning run is done (for tests; Grafana logs it).

Environment, as Grafana reads it:
  GF_SERVER_HTTP_PORT, GF_PATHS_DATA (default /var/lib/grafana),
  GF_PATHS_PROVISIONING (default /etc/grafana/provisioning),
  GF_SECURITY_ADMIN_USER, GF_SECURITY_ADMIN_PASSWORD, GF_SECURITY_ADMIN_PASSWORD__FILE
  (the admin credentials apply only on the first start, when no stored user exists, as in Grafana).
  GF_DASHBOARDS_MIN_REFRESH_INTERVAL (default 5s): a shorter dashboard `refresh` is raised to it on save.
Stand-in knobs:
  STANDIN_GRAFANA_VERSION=V       the version /api/health reports (default 11.6.3-standin)
  STANDIN_PROVISIONING_DELAY=S    seconds between the port opening and the first provisioning run
                                  (default 1: Grafana provisions in a background job)
  STANDIN_SERVICE_ACCOUNT_TOKENS  "token:Role,..." bearer tokens (Role: Admin, Editor or Viewer)
  STANDIN_HEALTH_FAIL=1           /api/health answers 503 with "database": "failing"
  STANDIN_STARTUP_DELAY=SECONDS   do not listen until then (Grafana's migrations)

Provisioning YAML is read with the small built-in parser below (block maps, block lists, scalars,
quotes, comments, simple flow collections), never PyYAML, so the host and the slim image behave alike.
Standard library only. State lives in <data>/standin.json, replaced atomically after every change.
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import traceback
from base64 import b64decode
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

VERSION = "11.6.3-standin"
ROLES = {"Viewer": 0, "Editor": 1, "Admin": 2}
NEVER = "0001-01-01T00:00:00Z"


class ApiError(Exception):
    """An answer other than 2xx: its status and JSON body (Grafana's usual {"message": ...})."""

    def __init__(self, code, message, /, **extra):
        super().__init__(message)
        self.status, self.body = code, {"message": message, **extra}


def bad_request():
    return ApiError(400, "bad request data")


def unauthorized(message="Unauthorized", message_id="auth.unauthorized"):
    # Grafana's auth errors come from its errutil package, hence the richer shape
    return ApiError(401, message, extra=None, messageId=message_id, statusCode=401, traceID="")


# --- a small YAML reader for Grafana provisioning files -------------------------------------------


class YamlError(ValueError):
    pass


def _strip_comment(line):
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _split_key(text):
    """'key: value' -> ('key', 'value'); None when the text is not a mapping entry."""
    match = re.match(r"""^("[^"]*"|'[^']*'|[^'"\s][^:]*?)\s*:(?:\s+(.*))?$""", text)
    if not match:
        return None
    return _scalar(match.group(1)), (match.group(2) or "").strip()


def _split_flow(text):
    items, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        items.append(text[start:].strip())
    return items


def _scalar(text):
    text = text.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return json.loads(text)  # YAML double-quoted escapes are a superset of JSON's common ones
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text[1:-1].replace("''", "'")
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(item) for item in _split_flow(text[1:-1])]
    if text.startswith("{") and text.endswith("}"):
        pairs = [_split_key(item) for item in _split_flow(text[1:-1])]
        if None in pairs:
            raise YamlError(f"unsupported flow mapping: {text}")
        return {k: _scalar(v) for k, v in pairs}
    if text[:1] in ("|", ">", "&", "*", "!"):
        raise YamlError(f"unsupported YAML syntax (block scalar, anchor or tag): {text}")
    lowered = text.lower()
    if lowered in ("", "~", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", text):
        return float(text)
    return text


def parse_yaml(text):
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        content = _strip_comment(raw)
        if content.strip() in ("", "---", "..."):
            continue
        indent = len(content) - len(content.lstrip(" "))
        if content[indent] == "\t":
            raise YamlError(f"line {number}: tabs are not allowed in indentation")
        lines.append((indent, content.strip(), number))
    if not lines:
        return None
    value, end = _block(lines, 0, lines[0][0])
    if end != len(lines):
        raise YamlError(f"line {lines[end][2]}: unexpected indentation")
    return value


def _block(lines, i, indent):
    if lines[i][1] == "-" or lines[i][1].startswith("- "):
        return _sequence(lines, i, indent)
    if _split_key(lines[i][1]) is None:
        return _scalar(lines[i][1]), i + 1
    return _mapping(lines, i, indent)


def _sequence(lines, i, indent):
    items = []
    while i < len(lines) and lines[i][0] == indent and (lines[i][1] == "-" or lines[i][1].startswith("- ")):
        rest = lines[i][1][1:].strip()
        if not rest:
            if i + 1 < len(lines) and lines[i + 1][0] > indent:
                value, i = _block(lines, i + 1, lines[i + 1][0])
            else:
                value, i = None, i + 1
        elif _split_key(rest) is not None or rest.startswith("- "):
            # "- key: v" opens a mapping whose keys sit at the column of "key"
            column = indent + len(lines[i][1]) - len(rest)
            lines[i] = (column, rest, lines[i][2])
            value, i = _block(lines, i, column)
        else:
            value, i = _scalar(rest), i + 1
        items.append(value)
    return items, i


def _mapping(lines, i, indent):
    result = {}
    while i < len(lines) and lines[i][0] == indent:
        entry = _split_key(lines[i][1])
        if entry is None:
            raise YamlError(f"line {lines[i][2]}: expected 'key: value', got {lines[i][1]!r}")
        key, rest = entry
        i += 1
        if rest:
            result[key] = _scalar(rest)
        elif i < len(lines) and (
            lines[i][0] > indent or (lines[i][0] == indent and lines[i][1].startswith("-"))
        ):
            result[key], i = _block(lines, i, lines[i][0])
        else:
            result[key] = None
    if i < len(lines) and lines[i][0] > indent:
        raise YamlError(f"line {lines[i][2]}: unexpected indentation")
    return result, i


def expand_env(value):
    """Grafana expands $VAR and ${VAR} in provisioning values."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: os.environ.get(m.group(1) or m.group(2), ""), value)
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    return value


# --- state -----------------------------------------------------------------------------------------


def slugify(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def now():
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid():
    return "s" + secrets.token_hex(7)


def hash_password(password, salt):
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 10000).hex()


_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|M|y)$")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "M": 2592000,
    "y": 31536000,
}


def parse_duration(text):
    """Grafana's gtime.ParseDuration for the plain `<n><unit>` forms; None when it cannot parse."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else None


def clamp_refresh(dash):
    """A `refresh` below [dashboards] min_refresh_interval (or one Grafana cannot parse) is replaced
    by the minimum on save, API and file provisioning alike; "" and "auto" are left alone
    (pkg/services/dashboards/service/dashboard_service.go SaveDashboard, ImportDashboard and
    SaveProvisionedDashboard with validateDashboardRefreshInterval)."""
    minimum = os.environ.get("GF_DASHBOARDS_MIN_REFRESH_INTERVAL") or "5s"
    refresh = dash.get("refresh")
    if not isinstance(refresh, str) or refresh in ("", "auto"):
        return
    seconds = parse_duration(refresh)
    if seconds is None or seconds < (parse_duration(minimum) or 0):
        dash["refresh"] = minimum


DS_STRINGS = ("name", "type", "access", "url", "uid", "user", "database", "basicAuthUser")
DS_BOOLS = ("isDefault", "basicAuth", "withCredentials")


def check_datasource_body(body, required):
    """Reject what Grafana's JSON binding rejects: wrong types and empty required fields."""
    for key in DS_STRINGS:
        if key in body and not isinstance(body[key], (str, type(None))):
            raise bad_request()
    for key in DS_BOOLS:
        if key in body and not isinstance(body[key], (bool, type(None))):
            raise bad_request()
    if body.get("jsonData") is not None and not isinstance(body["jsonData"], dict):
        raise bad_request()
    secure = body.get("secureJsonData") or {}
    if not isinstance(secure, dict) or not all(isinstance(v, str) for v in secure.values()):
        raise bad_request()
    version = body.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise bad_request()
    if any(not body.get(key) for key in required):
        raise bad_request()


class Store:
    def __init__(self, data_dir):
        self.path = Path(data_dir) / "standin.json"
        self.lock = threading.RLock()
        if not self.path.exists():
            self.state = {
                "users": [],
                "datasources": [],
                "dashboards": {},
                "folders": {},
                "next_id": {"datasource": 1, "dashboard": 1},
            }
        else:
            self.state = json.loads(self.path.read_text())

    def save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".standin.json.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def next_id(self, kind):
        value = self.state["next_id"][kind]
        self.state["next_id"][kind] = value + 1
        return value

    # users ---------------------------------------------------------------------------------------
    def ensure_admin(self, login, password):
        if not self.state["users"]:
            salt = secrets.token_hex(8)
            self.state["users"].append(
                {"login": login, "salt": salt, "role": "Admin", "hash": hash_password(password, salt)}
            )

    def check_password(self, login, password):
        for user in self.state["users"]:
            if user["login"] == login:
                return hmac.compare_digest(user["hash"], hash_password(password, user["salt"]))
        return False

    # data sources --------------------------------------------------------------------------------
    def ds_find(self, uid=None, name=None):
        for ds in self.state["datasources"]:
            if (uid is not None and ds["uid"] == uid) or (name is not None and ds["name"] == name):
                return ds
        return None

    @staticmethod
    def ds_dto(ds):
        dto = {k: v for k, v in ds.items() if k != "secureJsonData"}
        dto["secureJsonFields"] = {key: True for key in ds["secureJsonData"]}
        dto["typeLogoUrl"] = f"public/app/plugins/datasource/{ds['type']}/img/logo.svg"
        return dto

    def _set_default(self, ds, adding):
        if adding and not any(other["isDefault"] for other in self.state["datasources"] if other is not ds):
            ds["isDefault"] = True  # an org's first data source becomes its default
        if ds["isDefault"]:
            for other in self.state["datasources"]:
                other["isDefault"] = other is ds

    def ds_add(self, body, read_only=False):
        check_datasource_body(body, ("type", "access"))
        name = body.get("name") or self._free_name(body["type"])
        if self.ds_find(name=name):
            raise ApiError(409, "data source with the same name already exists")
        uid = body.get("uid") or new_uid()
        if self.ds_find(uid=uid):
            raise ApiError(409, "data source with the same uid already exists")
        ds = {
            "id": self.next_id("datasource"),
            "uid": uid,
            "orgId": 1,
            "name": name,
            "version": 1,
            "readOnly": read_only,
            "secureJsonData": dict(body.get("secureJsonData") or {}),
            "jsonData": dict(body.get("jsonData") or {}),
        }
        ds.update(
            {k: body.get(k) or "" for k in ("type", "access", "url", "user", "database", "basicAuthUser")}
        )
        ds.update({k: bool(body.get(k)) for k in DS_BOOLS})
        self.state["datasources"].append(ds)
        self._set_default(ds, adding=True)
        return ds

    def _free_name(self, ds_type):
        name, n = ds_type.lower(), 1
        while self.ds_find(name=name):
            name, n = f"{ds_type.lower()}-{n}", n + 1
        return name

    def ds_update(self, ds, body, provisioning=False):
        check_datasource_body(body, ("name", "type", "access"))
        if ds["readOnly"] and not provisioning:
            raise ApiError(403, "Cannot update read-only data source")
        other = self.ds_find(name=body["name"])
        if other is not None and other is not ds:
            raise ApiError(409, "Failed to update datasource: data source with the same name already exists")
        version = body.get("version") or 0
        if version and version < ds["version"]:
            raise ApiError(
                409, "Datasource has already been updated by someone else. Please reload and try again"
            )
        secure = {**ds["secureJsonData"], **(body.get("secureJsonData") or {})}
        ds.update(
            {
                k: body.get(k) or ""
                for k in ("name", "type", "access", "url", "user", "database", "basicAuthUser")
            }
        )
        ds.update({k: bool(body.get(k)) for k in DS_BOOLS})
        ds.update(jsonData=dict(body.get("jsonData") or {}), secureJsonData=secure, version=version + 1)
        self._set_default(ds, adding=False)
        return ds

    # folders -------------------------------------------------------------------------------------
    def folder_add(self, body):
        if not isinstance(body.get("title", ""), str) or not isinstance(body.get("uid", ""), str):
            raise bad_request()
        title = (body.get("title") or "").strip()
        if not title:
            raise ApiError(400, "folder title cannot be empty")
        uid = body.get("uid") or new_uid()
        if uid in self.state["folders"] or uid in self.state["dashboards"]:
            raise ApiError(409, "a folder/dashboard with the same uid already exists")
        # No unique title: since 11.3 two folders may share a title (the migration "Remove unique index
        # UQE_folder_org_id_parent_uid_title" in pkg/services/sqlstore/migrations/folder_mig.go; the
        # folder store's Create in pkg/services/folder/folderimpl/sqlstore.go checks only the uid).
        stamp = now()
        folder = {
            "id": self.next_id("dashboard"),
            "uid": uid,
            "title": title,
            "version": 1,
            "created": stamp,
            "updated": stamp,
        }
        self.state["folders"][uid] = folder
        return folder

    @staticmethod
    def folder_dto(folder):
        return {
            **folder,
            "orgId": 1,
            "url": f"/dashboards/f/{folder['uid']}/{slugify(folder['title'])}",
            "hasAcl": False,
            "canSave": True,
            "canEdit": True,
            "canAdmin": True,
            "canDelete": True,
            "createdBy": "admin",
            "updatedBy": "admin",
        }

    # dashboards ----------------------------------------------------------------------------------
    def dash_save(self, body, provisioned=None):
        dash, folder_uid = body.get("dashboard"), body.get("folderUid") or ""
        if not isinstance(dash, dict) or not isinstance(folder_uid, str):
            raise bad_request()
        overwrite = bool(body.get("overwrite")) or provisioned is not None
        title = dash.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ApiError(400, "Dashboard title cannot be empty", status="empty-name")
        if folder_uid and folder_uid not in self.state["folders"]:
            raise ApiError(400, "folder not found")
        dashboards = self.state["dashboards"]
        existing = None
        if dash.get("id"):
            existing = next((d for d in dashboards.values() if d["id"] == dash["id"]), None)
            if existing is None:
                raise ApiError(404, "Dashboard not found", status="not-found")
        uid = dash.get("uid") or (existing["uid"] if existing else "")
        if not isinstance(uid, str):
            raise bad_request()
        if uid in self.state["folders"] or (
            existing and uid in dashboards and dashboards[uid] is not existing
        ):
            raise ApiError(400, "A dashboard with the same uid already exists")
        existing = existing or dashboards.get(uid)
        # Same title in the same folder, another uid: since 11.3 (PR #90687) there is no unique-title
        # rule, with or without `overwrite`: the save makes a second dashboard of that title.
        if existing is not None:
            info = existing.get("provisioned")
            if provisioned is None and info and not info.get("allowUiUpdates"):
                raise ApiError(400, "Cannot save provisioned dashboard")
            if not overwrite and dash.get("version") != existing["version"]:
                raise ApiError(
                    412, "The dashboard has been changed by someone else", status="version-mismatch"
                )
            if existing["uid"] != uid:
                del dashboards[existing["uid"]]
            record = existing
            record["version"] += 1
        else:
            uid = uid or new_uid()
            record = {"id": self.next_id("dashboard"), "version": 1, "created": now()}
        record.update(
            uid=uid,
            folderUid=folder_uid,
            updated=now(),
            provisioned=provisioned if provisioned is not None else record.get("provisioned"),
        )
        stored = {**dash, "id": record["id"], "uid": uid, "version": record["version"]}
        # Legacy /api stores the JSON as sent, in 12.x too: it goes through the v0alpha1 dashboard API,
        # which neither migrates on write nor on read (pkg/services/dashboards/service/client/client.go,
        # PR #104213 / #104248). Only the refresh floor applies.
        clamp_refresh(stored)
        record["json"] = stored
        dashboards[uid] = record
        return record

    def dash_meta(self, record):
        folder = self.state["folders"].get(record["folderUid"])
        slug = slugify(record["json"]["title"])
        info = record.get("provisioned") or {}
        return {
            "type": "db",
            "canSave": True,
            "canEdit": True,
            "canAdmin": True,
            "canStar": True,
            "canDelete": True,
            "slug": slug,
            "url": f"/d/{record['uid']}/{slug}",
            "expires": NEVER,
            "created": record["created"],
            "updated": record["updated"],
            "updatedBy": "admin",
            "createdBy": "admin",
            "version": record["version"],
            "hasAcl": False,
            "isFolder": False,
            "folderId": folder["id"] if folder else 0,
            "folderUid": record["folderUid"],
            "folderTitle": folder["title"] if folder else "General",
            "folderUrl": self.folder_dto(folder)["url"] if folder else "",
            # pkg/api/dashboard.go GetDashboard: `provisioned` is true only when the provider does not
            # allow UI updates; `provisionedExternalId` is set for every file-provisioned dashboard
            # (the file's path relative to the provider's path).
            "provisioned": bool(info) and not info.get("allowUiUpdates"),
            "provisionedExternalId": os.path.relpath(
                info["path"], info.get("root") or os.path.dirname(info["path"])
            )
            if info
            else "",
        }


# --- file provisioning -----------------------------------------------------------------------------


def _yaml_files(directory):
    return sorted(p for p in Path(directory).glob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _read_config(path):
    try:
        return expand_env(parse_yaml(path.read_text())) or {}
    except (OSError, YamlError) as err:
        raise SystemExit(f"grafana-standin: cannot read provisioning file {path}: {err}") from err


def provision_datasources(store, directory):
    for path in _yaml_files(directory):
        config = _read_config(path)
        for gone in config.get("deleteDatasources") or []:
            ds = store.ds_find(name=gone.get("name"))
            if ds is not None:
                store.state["datasources"].remove(ds)
        for item in config.get("datasources") or []:
            body = {"access": "proxy", **item}
            read_only = not body.pop("editable", False)
            ds = store.ds_find(uid=body.get("uid")) if body.get("uid") else None
            ds = ds or store.ds_find(name=body.get("name"))
            try:
                if ds is None:
                    ds = store.ds_add(body, read_only=read_only)
                else:
                    store.ds_update(ds, body, provisioning=True)  # like Grafana: version = file's + 1
                ds["readOnly"] = read_only
            except ApiError as err:
                raise SystemExit(
                    f"grafana-standin: {path}: data source {body.get('name')!r}: {err.body['message']}"
                ) from err


def read_providers(directory):
    """The dashboard providers of every file, read once at start as Grafana does."""
    return [
        provider for path in _yaml_files(directory) for provider in _read_config(path).get("providers") or []
    ]


def provision_dashboards(store, providers):
    for provider in providers:
        _provision_provider(store, provider)


def _provider_folder(store, provider, name):
    """file_reader.go getOrCreateFolder: no `folder` title, the General folder (a `folderUid` alone is
    ignored); else the folder of that uid (or, without a uid, of that title at the root), created with
    the uid and title when missing. Titles need not be unique (11.3+), so another folder of the same
    title is no obstacle. None when the folder cannot be created: logged, the provider saves nothing."""
    title, wanted_uid = provider.get("folder"), provider.get("folderUid")
    if not title:
        return ""
    folders = store.state["folders"]
    folder = (
        folders.get(wanted_uid)
        if wanted_uid
        else next((f for f in folders.values() if f["title"] == title), None)
    )
    try:
        folder = folder or store.folder_add({"uid": wanted_uid or "", "title": title})
    except ApiError as err:
        print(
            f"grafana-standin: provider {name!r}: failed to get or create provisioning folder {title!r}: "
            f"{err.body['message']}",
            file=sys.stderr,
        )
        return None
    return folder["uid"]


def _provision_provider(store, provider):
    """One pass of pkg/services/provisioning/dashboards/file_reader.go walkDisk: every *.json under the
    provider's path is saved unless its MD5 checksum equals the one recorded when it was last provisioned
    (saveDashboard; mtime is not compared); the save overwrites (createDashboardJSON sets Overwrite), so
    an API-made dashboard of that uid is taken over. Files gone: their dashboards deleted unless
    disableDeletion. Returns whether anything changed."""
    name = provider.get("name") or "default"
    root = Path((provider.get("options") or {}).get("path") or "")
    folder_uid = _provider_folder(store, provider, name)
    if folder_uid is None:
        return False
    mine = {
        r["provisioned"]["path"]: r
        for r in store.state["dashboards"].values()
        if (r.get("provisioned") or {}).get("provider") == name
    }
    seen, changed = set(), False
    for file in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            raw = file.read_bytes()
        except OSError as err:
            print(f"grafana-standin: skipping {file}: {err}", file=sys.stderr)
            continue
        checksum = hashlib.md5(raw, usedforsecurity=False).hexdigest()  # Grafana's util.Md5Sum
        seen.add(str(file))
        old = mine.get(str(file))
        if old and old["provisioned"]["checksum"] == checksum:
            continue
        try:
            dash = json.loads(raw)
        except ValueError:
            print(f"grafana-standin: skipping {file}: not JSON", file=sys.stderr)
            continue
        if not isinstance(dash, dict):
            print(f"grafana-standin: skipping {file}: not a JSON object", file=sys.stderr)
            continue
        dash.pop("id", None)
        if old and not dash.get("uid"):
            dash["uid"] = old["uid"]
        info = {
            "provider": name,
            "path": str(file),
            "root": str(root),
            "checksum": checksum,
            "allowUiUpdates": bool(provider.get("allowUiUpdates")),
        }
        try:
            store.dash_save({"dashboard": dash, "folderUid": folder_uid}, provisioned=info)
            changed = True
        except ApiError as err:
            print(f"grafana-standin: skipping {file}: {err.body['message']}", file=sys.stderr)
    if not provider.get("disableDeletion"):
        for path, record in mine.items():
            if path not in seen:
                store.state["dashboards"].pop(record["uid"], None)
                changed = True
    return changed


def _interval(provider):
    """updateIntervalSeconds, default 10 (pkg/services/provisioning/dashboards/config_reader.go)."""
    value = provider.get("updateIntervalSeconds")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 10


def say(line):
    """A line on stdout for whoever started the stand-in; nobody may be reading any more."""
    try:
        os.write(1, (line + "\n").encode())
    except OSError:
        pass


def run_provisioning(store, provisioning, delay):
    """pkg/services/provisioning/provisioning.go, 11.6.3+/12.0.2+ (PR #105428): RunInitProvisioners does
    nothing; Run provisions datasources, then dashboards, in a background service that starts beside the
    HTTP server, then PollChanges walks each provider's files every updateIntervalSeconds. A provisioning
    file it cannot read fails the service, and with it the whole server (exit code 1)."""
    time.sleep(delay)
    try:
        providers = read_providers(provisioning / "dashboards")
        with store.lock:
            provision_datasources(store, provisioning / "datasources")
            provision_dashboards(store, providers)
            store.save()
    except (SystemExit, OSError) as err:
        print(f"grafana-standin: provisioning failed: {err}", file=sys.stderr, flush=True)
        os._exit(1)
    say("grafana-standin provisioned")
    due = {index: time.monotonic() + _interval(p) for index, p in enumerate(providers)}
    while providers:
        index = min(due, key=due.get)
        time.sleep(max(0.0, due[index] - time.monotonic()))
        with store.lock:
            if _provision_provider(store, providers[index]):
                store.save()
        due[index] = time.monotonic() + _interval(providers[index])


# --- HTTP ------------------------------------------------------------------------------------------

ROUTES = []  # (method, compiled path, handler name, permission needed or None, minimum role)


def route(method, pattern, permission=None, role="Viewer"):
    def register(fn):
        ROUTES.append((method, re.compile(f"^{pattern}$"), fn, permission, role))
        return fn

    return register


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Like Grafana's Go server (TCP_NODELAY is Go's default): without it, a body written after its
    # headers waits ~40 ms for the client's delayed ACK on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = "grafana-standin"
    store: Store
    tokens: dict

    def log_request(self, code="-", size="-"):
        if not (self.path == "/api/health" and code == 200):  # the 2 s health check would drown the log
            super().log_request(code, size)

    def log_message(self, fmt, *args):
        sys.stderr.write(f"grafana-standin: {self.address_string()} {fmt % args}\n")

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def json_body(self, raw):
        media = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise bad_request()
        try:
            body = json.loads(raw)
        except ValueError:
            raise bad_request() from None
        if not isinstance(body, dict):
            raise bad_request()
        return body

    def authenticate(self):
        """The caller's role, or an ApiError shaped like Grafana's 401s."""
        header = self.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            role = self.tokens.get(credentials.strip())
            if role is None:
                raise unauthorized("Invalid API key", "api-key.invalid")
            return role
        if scheme.lower() == "basic" and credentials.strip():
            try:
                login, sep, password = b64decode(credentials.strip(), validate=True).decode().partition(":")
            except ValueError:
                login, sep, password = "", "", ""
            if sep and self.store.check_password(login, password):
                return "Admin"
            raise unauthorized("Invalid username or password", "password-auth.failed")
        raise unauthorized()

    def dispatch(self):
        url = urlsplit(self.path)
        raw = self.read_body()  # always drain it, or the next request on this connection breaks
        try:
            for method, pattern, fn, permission, minimum in ROUTES:
                match = pattern.match(url.path)
                if match and method == self.command:
                    break
            else:
                raise ApiError(404, "Not found")
            if fn is not health:
                role = self.authenticate()
                if ROLES[role] < ROLES[minimum]:
                    raise ApiError(
                        403,
                        "You'll need additional permissions to perform this action. "
                        f"Permissions needed: {permission}",
                        title="Access denied",
                        accessErrorId=f"ACE{secrets.randbelow(10**10):010d}",
                    )
            body = self.json_body(raw) if self.command in ("POST", "PUT") else {}
            args = [unquote(group) for group in match.groups()]
            with self.store.lock:
                status, answer, changed = fn(self.store, body, parse_qs(url.query), *args)
                if changed:
                    self.store.save()
            self.send_json(status, answer)
        except ApiError as err:
            self.send_json(err.status, err.body)
        except Exception:  # noqa: BLE001 -- a stand-in bug answers 500 like Grafana, not a dropped connection
            traceback.print_exc()
            self.send_json(500, {"message": "Internal Server Error"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = dispatch


@route("GET", "/api/health")
def health(store, body, query):
    failing = os.environ.get("STANDIN_HEALTH_FAIL") == "1"
    version = os.environ.get("STANDIN_GRAFANA_VERSION") or VERSION
    answer = {"database": "failing" if failing else "ok", "version": version, "commit": "standin"}
    return (503 if failing else 200), answer, False


@route("POST", "/api/datasources", "datasources:create", "Admin")
def datasource_add(store, body, query):
    ds = store.ds_add(body)
    return (
        200,
        {"message": "Datasource added", "id": ds["id"], "name": ds["name"], "datasource": store.ds_dto(ds)},
        True,
    )


# Reading data sources needs datasources:read, which only the fixed:datasources:reader role grants, and
# only to Admin by default (pkg/api/roles.go declareFixedRoles); Editors and Viewers get 403.
@route("GET", "/api/datasources", "datasources:read", "Admin")
def datasource_list(store, body, query):
    listed = sorted(store.state["datasources"], key=lambda ds: ds["name"].lower())
    hidden = ("secureJsonData", "version", "basicAuthUser", "withCredentials")
    return (
        200,
        [
            {
                **{k: v for k, v in ds.items() if k not in hidden},
                "typeName": ds["type"].title(),
                "typeLogoUrl": store.ds_dto(ds)["typeLogoUrl"],
            }
            for ds in listed
        ],
        False,
    )


def _existing_ds(store, uid=None, name=None):
    ds = store.ds_find(uid=uid, name=name)
    if ds is None:
        raise ApiError(404, "Data source not found")
    return ds


@route("GET", "/api/datasources/uid/([^/]+)", "datasources:read", "Admin")
def datasource_by_uid(store, body, query, uid):
    return 200, store.ds_dto(_existing_ds(store, uid=uid)), False


@route("GET", "/api/datasources/name/([^/]+)", "datasources:read", "Admin")
def datasource_by_name(store, body, query, name):
    return 200, store.ds_dto(_existing_ds(store, name=name)), False


@route("PUT", "/api/datasources/uid/([^/]+)", "datasources:write", "Admin")
def datasource_update(store, body, query, uid):
    ds = store.ds_update(_existing_ds(store, uid=uid), body)
    return (
        200,
        {"message": "Datasource updated", "id": ds["id"], "name": ds["name"], "datasource": store.ds_dto(ds)},
        True,
    )


@route("DELETE", "/api/datasources/uid/([^/]+)", "datasources:delete", "Admin")
def datasource_delete(store, body, query, uid):
    ds = _existing_ds(store, uid=uid)
    if ds["readOnly"]:
        raise ApiError(403, "Cannot delete read-only data source")
    store.state["datasources"].remove(ds)
    return 200, {"message": "Data source deleted", "id": ds["id"]}, True


@route("POST", "/api/dashboards/db", "dashboards:write", "Editor")
def dashboard_save(store, body, query):
    record = store.dash_save(body)
    meta = store.dash_meta(record)
    return (
        200,
        {
            "id": record["id"],
            "uid": record["uid"],
            "url": meta["url"],
            "status": "success",
            "version": record["version"],
            "slug": meta["slug"],
            "folderUid": record["folderUid"],
        },
        True,
    )


def _existing_dashboard(store, uid):
    if uid not in store.state["dashboards"]:
        raise ApiError(404, "Dashboard not found")
    return store.state["dashboards"][uid]


@route("GET", "/api/dashboards/uid/([^/]+)")
def dashboard_get(store, body, query, uid):
    record = _existing_dashboard(store, uid)
    return 200, {"dashboard": record["json"], "meta": store.dash_meta(record)}, False


@route("DELETE", "/api/dashboards/uid/([^/]+)", "dashboards:delete", "Editor")
def dashboard_delete(store, body, query, uid):
    record = _existing_dashboard(store, uid)
    if record.get("provisioned"):
        raise ApiError(400, "provisioned dashboard cannot be deleted")
    del store.state["dashboards"][uid]
    title = record["json"]["title"]
    return 200, {"title": title, "message": f"Dashboard {title} deleted", "uid": uid}, True


@route("POST", "/api/folders", "folders:create", "Editor")
def folder_create(store, body, query):
    return 200, store.folder_dto(store.folder_add(body)), True


@route("GET", "/api/folders")
def folder_list(store, body, query):
    folders = sorted(store.state["folders"].values(), key=lambda f: f["title"].lower())
    return 200, [{"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in folders], False


@route("GET", "/api/folders/([^/]+)")
def folder_get(store, body, query, uid):
    if uid not in store.state["folders"]:
        raise ApiError(404, "folder not found", status="not-found")
    return 200, store.folder_dto(store.state["folders"][uid]), False


@route("GET", "/api/search")
def search(store, body, query):
    text = (query.get("query") or [""])[0].lower()
    kinds = query.get("type") or ["dash-folder", "dash-db"]
    hits = []
    if "dash-folder" in kinds:
        for f in store.state["folders"].values():
            url = store.folder_dto(f)["url"]
            hits.append(
                {
                    "id": f["id"],
                    "uid": f["uid"],
                    "orgId": 1,
                    "title": f["title"],
                    "uri": f"db/{slugify(f['title'])}",
                    "url": url,
                    "slug": "",
                    "type": "dash-folder",
                    "tags": [],
                    "isStarred": False,
                    "sortMeta": 0,
                }
            )
    if "dash-db" in kinds:
        for record in store.state["dashboards"].values():
            meta = store.dash_meta(record)
            hit = {
                "id": record["id"],
                "uid": record["uid"],
                "orgId": 1,
                "title": record["json"]["title"],
                "uri": f"db/{meta['slug']}",
                "url": meta["url"],
                "slug": "",
                "type": "dash-db",
                "tags": record["json"].get("tags") or [],
                "isStarred": False,
                "sortMeta": 0,
            }
            if record["folderUid"]:
                hit.update({k: meta[k] for k in ("folderId", "folderUid", "folderTitle", "folderUrl")})
            hits.append(hit)
    hits = [h for h in hits if text in h["title"].lower()]
    return 200, sorted(hits, key=lambda h: (h["type"] != "dash-folder", h["title"].lower())), False


# Annotations, as pkg/api/annotations.go and the SQL store (pkg/services/annotations) do them: POST
# needs annotations:create (Editor), text must not be empty ("Failed to save annotation", 400), a
# dashboardUID that names a dashboard sets dashboardId, time defaults to now and timeEnd to time (epoch
# ms); the answer is {"message": "Annotation added", "id": N}. GET filters by from/to (overlap), tags
# (all of them, or any with matchAny=true), dashboardUID, type=annotation and limit (default 100),
# newest first.
def _annotations(store):
    store.state.setdefault("next_id", {}).setdefault("annotation", 1)
    return store.state.setdefault("annotations", [])


def _int_field(body, key):
    value = body.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request()
    return value


@route("POST", "/api/annotations", "annotations:create", "Editor")
def annotation_add(store, body, query):
    text = body.get("text")
    tags = body.get("tags") or []
    if not isinstance(text, str) or not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad_request()
    if not text:
        raise ApiError(400, "Failed to save annotation")
    items = _annotations(store)
    now = int(time.time() * 1000)
    epoch = _int_field(body, "time") or now
    epoch_end = _int_field(body, "timeEnd") or epoch
    dashboard_uid = body.get("dashboardUID") or ""
    dashboard = store.state["dashboards"].get(dashboard_uid) if dashboard_uid else None
    item = {
        "id": store.next_id("annotation"),
        "alertId": 0,
        "alertName": "",
        "dashboardId": dashboard["id"] if dashboard else _int_field(body, "dashboardId"),
        "dashboardUID": dashboard_uid or None,
        "panelId": _int_field(body, "panelId"),
        "userId": 1,
        "newState": "",
        "prevState": "",
        "created": now,
        "updated": now,
        "time": epoch,
        "timeEnd": epoch_end,
        "text": text,
        "tags": tags,
        "login": "admin",
        "email": "admin@localhost",
        "avatarUrl": "/avatar/46d229b033af06a191ff2267bca9ae56",
        "data": body.get("data") or {},
    }
    items.append(item)
    return 200, {"message": "Annotation added", "id": item["id"]}, True


def tag_pairs(tags):
    """pkg/services/tag/model.go ParseTagPairs: "key:value" (split at every ":", the first two parts
    kept, both trimmed) or a bare key; tags with an empty key are dropped."""
    pairs = []
    for text in tags:
        parts = text.split(":")
        key, value = parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")
        if key:
            pairs.append((key, value))
    return pairs


def _tags_match(stored, wanted, match_any):
    """xorm_store.go Get: per annotation, the number of its tags that match any wanted pair (a bare key
    matches every value of that key) must be > 0 with matchAny, else equal the number of wanted pairs."""
    hits = sum(1 for key, value in tag_pairs(stored) if any(k == key and v in ("", value) for k, v in wanted))
    return hits > 0 if match_any else hits == len(wanted)


@route("GET", "/api/annotations")
def annotation_find(store, body, query):
    """pkg/api/annotations.go GetAnnotations and pkg/services/annotations/annotationsimpl/xorm_store.go Get:
    a dashboardUID is resolved to its dashboard's id (unknown: 400 "Invalid dashboard UID in annotation
    request") and filters on dashboard_id; from/to filter only when both are > 0 (epoch <= to AND
    epoch_end >= from); type=alert keeps alert annotations (none here), type=annotation the others; tags
    as in _tags_match; limit 0 means 100; ORDER BY epoch_end DESC, epoch DESC."""

    def one(key, default=""):
        return (query.get(key) or [default])[0]

    try:
        start, end = int(one("from", "0")), int(one("to", "0"))
        limit = int(one("limit", "0")) or 100
        dashboard_id = int(one("dashboardId", "0"))
    except ValueError:
        raise bad_request() from None
    if one("dashboardUID"):
        dashboard = store.state["dashboards"].get(one("dashboardUID"))
        if dashboard is None:
            raise ApiError(400, "Invalid dashboard UID in annotation request")
        dashboard_id = dashboard["id"]
    wanted = tag_pairs(query.get("tags") or [])
    match_any = one("matchAny").lower() == "true"
    kind = one("type")
    found = []
    for item in _annotations(store):
        if dashboard_id and item["dashboardId"] != dashboard_id:
            continue
        if start > 0 and end > 0 and not (item["time"] <= end and item["timeEnd"] >= start):
            continue
        if kind == "alert" and not item["alertId"] or kind == "annotation" and item["alertId"]:
            continue
        if wanted and not _tags_match(item["tags"], wanted, match_any):
            continue
        found.append(item)
    found.sort(key=lambda i: (i["timeEnd"], i["time"]), reverse=True)
    by_id = {d["id"]: uid for uid, d in store.state["dashboards"].items()}
    # The answer names each annotation's dashboard by the uid of its dashboard id, looked up now.
    return (
        200,
        [{**i, "dashboardUID": by_id.get(i["dashboardId"])} for i in (found if limit < 0 else found[:limit])],
        False,
    )


# --- start-up --------------------------------------------------------------------------------------


def check_file_variables(environ):
    """packaging/docker/run.sh: for every GF_*__FILE variable the image reads the file into GF_*, and
    exits 1 when GF_* is set as well ("Both ... are set (but are exclusive)")."""
    for name, value in environ.items():
        if name.startswith("GF_") and name.endswith("__FILE") and value:
            plain = name[: -len("__FILE")]
            if environ.get(plain):
                print(f"ERROR: Both {plain} and {name} are set (but are exclusive)", file=sys.stderr)
                raise SystemExit(1)


def admin_password():
    file = os.environ.get("GF_SECURITY_ADMIN_PASSWORD__FILE")
    if file:
        try:
            return Path(file).read_text().rstrip("\n")  # like the image's $(< file)
        except OSError as err:
            raise SystemExit(f"grafana-standin: cannot read GF_SECURITY_ADMIN_PASSWORD__FILE: {err}") from err
    return os.environ.get("GF_SECURITY_ADMIN_PASSWORD", "admin")


def parse_tokens(spec):
    tokens = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        token, _, role = item.rpartition(":")
        if not token or role not in ROLES:
            raise SystemExit(
                f"grafana-standin: bad STANDIN_SERVICE_ACCOUNT_TOKENS entry {item!r} "
                "(expected token:Admin|Editor|Viewer)"
            )
        tokens[token] = role
    return tokens


def main(argv=None):
    parser = argparse.ArgumentParser(description="Grafana HTTP API test double for irisctl's tests")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GF_SERVER_HTTP_PORT") or 3000))
    parser.add_argument("--data", default=os.environ.get("GF_PATHS_DATA") or "/var/lib/grafana")
    args = parser.parse_args(argv)
    provisioning = Path(os.environ.get("GF_PATHS_PROVISIONING") or "/etc/grafana/provisioning")

    check_file_variables(os.environ)
    store = Store(args.data)
    store.ensure_admin(os.environ.get("GF_SECURITY_ADMIN_USER") or "admin", admin_password())
    try:
        store.save()
    except OSError as err:
        raise SystemExit(f"grafana-standin: cannot write state under {args.data}: {err}") from err

    Handler.store, Handler.tokens = store, parse_tokens(os.environ.get("STANDIN_SERVICE_ACCOUNT_TOKENS", ""))
    # As PID 1 in a container, Python would ignore SIGTERM: turn it into a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(float(os.environ.get("STANDIN_STARTUP_DELAY") or 0))
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    say(f"grafana-standin listening on {args.host}:{server.server_address[1]}")
    delay = float(os.environ.get("STANDIN_PROVISIONING_DELAY") or 1)
    threading.Thread(target=run_provisioning, args=(store, provisioning, delay), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
