"""Checks the Grafana stand-in against the behaviour table in the project's Grafana reference.

Every test drives the real script as a subprocess on a free port with its own data directory.
"""

import base64
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml  # PyYAML, pinned with hashes in stack/api/requirements-dev.txt: the reference YAML reader

SCRIPT = Path(__file__).with_name("standin.py")
PASSWORD = "s3cret-pw"
UNAUTHORIZED = {
    "extra": None,
    "message": "Unauthorized",
    "messageId": "auth.unauthorized",
    "statusCode": 401,
    "traceID": "",
}


class Standin:
    def __init__(self, tmp_path, env=None, port=0):
        self.data = tmp_path / "data"
        self.provisioning = tmp_path / "provisioning"
        self.env = {
            "GF_SECURITY_ADMIN_PASSWORD": PASSWORD,
            "GF_PATHS_PROVISIONING": str(self.provisioning),
            "STANDIN_SERVICE_ACCOUNT_TOKENS": "adm-tok:Admin,ed-tok:Editor,view-tok:Viewer",
            # Provision at once; tests of the background job set a delay.
            "STANDIN_PROVISIONING_DELAY": "0",
            **(env or {}),
        }
        self.port, self.proc = port, None

    def start(self, wait_provisioned=True, **env):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GF_", "STANDIN_"))}
        full_env.update(self.env, **env)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data",
                str(self.data),
            ],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("grafana-standin listening on 127.0.0.1:"):
            self.proc.kill()
            raise AssertionError(f"stand-in did not start: {line!r} {self.proc.stderr.read()}")
        self.url = "http://127.0.0.1:" + line.strip().rsplit(":", 1)[1]
        if wait_provisioned:
            self.wait_provisioned()
        return self

    def wait_provisioned(self):
        """Until the background provisioning's first run is done (the stand-in says so on stdout)."""
        line = self.proc.stdout.readline()
        assert line == "grafana-standin provisioned\n", (line, self.proc.poll())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def restart(self, **env):
        self.stop()
        return self.start(**env)

    def call(
        self,
        method,
        path,
        body=None,
        auth=("admin", PASSWORD),
        token=None,
        content_type="application/json",
        raw=None,
    ):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None and content_type:
            request.add_header("Content-Type", content_type)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        elif auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())


@pytest.fixture
def standin(tmp_path):
    server = Standin(tmp_path)
    yield server.start()
    server.stop()


def prometheus(**extra):
    return {
        "name": "Prometheus",
        "type": "prometheus",
        "access": "proxy",
        "url": "http://prometheus:9090",
        "uid": "prometheus",
        **extra,
    }


def dashboard(**extra):
    return {"dashboard": {"title": "Iris API", "panels": [{"id": 1, "type": "timeseries"}], **extra}}


# --- health and start-up ---------------------------------------------------------------------------


def test_health_needs_no_auth(standin):
    assert standin.call("GET", "/api/health", auth=None) == (
        200,
        {"database": "ok", "version": "11.6.3-standin", "commit": "standin"},
    )


def test_health_failing_is_503(tmp_path):
    server = Standin(tmp_path, {"STANDIN_HEALTH_FAIL": "1"}).start()
    try:
        status, body = server.call("GET", "/api/health", auth=None)
        assert (status, body["database"]) == (503, "failing")
    finally:
        server.stop()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_startup_delay_refuses_connections_until_ready(tmp_path):
    port = free_port()
    server = Standin(tmp_path, {"STANDIN_STARTUP_DELAY": "1.5"}, port=port)
    started = time.monotonic()
    server.proc = None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GF_", "STANDIN_"))}
    env.update(server.env)
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--host", "127.0.0.1", "--port", str(port), "--data", str(server.data)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
        assert proc.stdout.readline().strip() == f"grafana-standin listening on 127.0.0.1:{port}"
        assert time.monotonic() - started >= 1.5
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_sigterm_exits_cleanly(standin):
    standin.proc.send_signal(signal.SIGTERM)
    assert standin.proc.wait(timeout=5) == 0


def test_unknown_route_is_404(standin):
    assert standin.call("GET", "/api/nothing-here") == (404, {"message": "Not found"})


# --- auth ------------------------------------------------------------------------------------------


def test_missing_credentials_401(standin):
    assert standin.call("GET", "/api/datasources", auth=None) == (401, UNAUTHORIZED)


@pytest.mark.parametrize("auth", [("admin", "wrong"), ("nobody", PASSWORD)])
def test_wrong_password_401(standin, auth):
    assert standin.call("GET", "/api/datasources", auth=auth) == (
        401,
        {**UNAUTHORIZED, "message": "Invalid username or password", "messageId": "password-auth.failed"},
    )


def test_bad_bearer_token_401(standin):
    assert standin.call("GET", "/api/datasources", token="nope") == (
        401,
        {**UNAUTHORIZED, "message": "Invalid API key", "messageId": "api-key.invalid"},
    )


def test_service_account_roles(standin):
    assert standin.call("POST", "/api/datasources", prometheus(), token="adm-tok")[0] == 200
    assert standin.call("GET", "/api/datasources/uid/prometheus", token="adm-tok")[0] == 200
    status, body = standin.call("POST", "/api/datasources", prometheus(name="x", uid="x"), token="view-tok")
    assert status == 403
    assert body["title"] == "Access denied" and body["accessErrorId"].startswith("ACE")
    assert body["message"] == (
        "You'll need additional permissions to perform this action. Permissions needed: datasources:create"
    )
    assert standin.call("POST", "/api/datasources", prometheus(name="x", uid="x"), token="ed-tok")[0] == 403
    assert standin.call("POST", "/api/dashboards/db", dashboard(), token="ed-tok")[0] == 200
    assert standin.call("POST", "/api/dashboards/db", dashboard(), token="view-tok")[0] == 403


def test_admin_credentials_apply_only_on_first_start(standin):
    standin.restart(GF_SECURITY_ADMIN_PASSWORD="changed-later", GF_SECURITY_ADMIN_USER="root")
    assert standin.call("GET", "/api/datasources")[0] == 200
    assert standin.call("GET", "/api/datasources", auth=("admin", "changed-later"))[0] == 401
    assert standin.call("GET", "/api/datasources", auth=("root", "changed-later"))[0] == 401


@pytest.mark.parametrize("token", ["view-tok", "ed-tok"])
def test_datasource_reads_are_admin_only(standin, token):
    # pkg/api/roles.go: datasources:read comes with fixed:datasources:reader, granted to Admin only.
    standin.call("POST", "/api/datasources", prometheus())
    for path in ("/api/datasources", "/api/datasources/uid/prometheus", "/api/datasources/name/Prometheus"):
        status, body = standin.call("GET", path, token=token)
        assert status == 403, path
        assert body["message"].endswith("Permissions needed: datasources:read")
    assert (
        standin.call("GET", "/api/dashboards/uid/nope", token="view-tok")[0] == 404
    )  # dashboards stay readable


def test_password_and_password_file_are_exclusive(tmp_path):
    # packaging/docker/run.sh: both GF_X and GF_X__FILE set -> "ERROR: Both ... (but are exclusive)", exit 1.
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--port", "0", "--data", str(tmp_path / "data")],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("GF_")},
            "GF_SECURITY_ADMIN_PASSWORD": "x",
            "GF_SECURITY_ADMIN_PASSWORD__FILE": str(secret),
        },
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert proc.returncode == 1
    assert (
        "ERROR: Both GF_SECURITY_ADMIN_PASSWORD and GF_SECURITY_ADMIN_PASSWORD__FILE are set (but are exclusive)"
        in proc.stderr
    )


def test_admin_from_env_user_and_password_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    server = Standin(
        tmp_path, {"GF_SECURITY_ADMIN_USER": "boss", "GF_SECURITY_ADMIN_PASSWORD__FILE": str(secret)}
    )
    del server.env["GF_SECURITY_ADMIN_PASSWORD"]
    server.start()
    try:
        assert server.call("GET", "/api/folders", auth=("boss", "from-file"))[0] == 200
        assert server.call("GET", "/api/folders", auth=("admin", PASSWORD))[0] == 401
    finally:
        server.stop()


# --- request validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/api/datasources"),
        ("PUT", "/api/datasources/uid/prometheus"),
        ("POST", "/api/dashboards/db"),
        ("POST", "/api/folders"),
    ],
)
def test_non_json_content_type_is_bad_request(standin, method, path):
    standin.call("POST", "/api/datasources", prometheus())
    status, body = standin.call(method, path, prometheus(), content_type="text/plain")
    assert (status, body) == (400, {"message": "bad request data"})


@pytest.mark.parametrize(
    "body",
    [
        {"type": "prometheus"},
        {"access": "proxy"},
        {"type": "", "access": "proxy"},
        {"type": "prometheus", "access": "proxy", "isDefault": "yes"},
    ],
)
def test_datasource_missing_or_mistyped_fields(standin, body):
    assert standin.call("POST", "/api/datasources", body) == (400, {"message": "bad request data"})


def test_malformed_json_and_charset(standin):
    assert standin.call("POST", "/api/datasources", raw=b"{nope") == (400, {"message": "bad request data"})
    assert (
        standin.call(
            "POST", "/api/datasources", prometheus(), content_type="application/json; charset=utf-8"
        )[0]
        == 200
    )
    assert standin.call("POST", "/api/dashboards/db", {"folderUid": ""}) == (
        400,
        {"message": "bad request data"},
    )


# --- data sources ----------------------------------------------------------------------------------


def test_add_datasource(standin):
    status, body = standin.call("POST", "/api/datasources", prometheus(secureJsonData={"password": "pw"}))
    assert status == 200
    assert body["message"] == "Datasource added" and body["name"] == "Prometheus"
    assert body["id"] == body["datasource"]["id"]
    ds = body["datasource"]
    assert ds["version"] == 1 and ds["uid"] == "prometheus" and ds["readOnly"] is False
    assert ds["secureJsonFields"] == {"password": True} and "secureJsonData" not in ds


def test_first_datasource_is_forced_default(standin):
    assert standin.call("POST", "/api/datasources", prometheus(isDefault=False))[1]["datasource"]["isDefault"]
    second = standin.call("POST", "/api/datasources", prometheus(name="Other", uid="other"))[1]
    assert second["datasource"]["isDefault"] is False
    standin.call("POST", "/api/datasources", prometheus(name="Third", uid="third", isDefault=True))
    defaults = [ds["uid"] for ds in standin.call("GET", "/api/datasources")[1] if ds["isDefault"]]
    assert defaults == ["third"]


def test_datasource_conflicts(standin):
    standin.call("POST", "/api/datasources", prometheus())
    assert standin.call("POST", "/api/datasources", prometheus(uid="other")) == (
        409,
        {"message": "data source with the same name already exists"},
    )
    assert standin.call("POST", "/api/datasources", prometheus(name="Other")) == (
        409,
        {"message": "data source with the same uid already exists"},
    )


def test_datasource_without_name_or_uid_gets_generated_ones(standin):
    first = standin.call("POST", "/api/datasources", {"type": "prometheus", "access": "proxy"})[1]
    second = standin.call("POST", "/api/datasources", {"type": "prometheus", "access": "proxy"})[1]
    assert (first["name"], second["name"]) == ("prometheus", "prometheus-1")
    assert first["datasource"]["uid"] and first["datasource"]["uid"] != second["datasource"]["uid"]


def test_get_datasource_by_uid_name_and_list(standin):
    standin.call(
        "POST",
        "/api/datasources",
        prometheus(jsonData={"httpMethod": "POST"}, secureJsonData={"basicAuthPassword": "x"}),
    )
    status, by_uid = standin.call("GET", "/api/datasources/uid/prometheus")
    assert status == 200 and by_uid["jsonData"] == {"httpMethod": "POST"}
    assert by_uid["secureJsonFields"] == {"basicAuthPassword": True} and "secureJsonData" not in by_uid
    assert standin.call("GET", "/api/datasources/name/Prometheus") == (200, by_uid)
    assert standin.call("GET", "/api/datasources/uid/missing") == (404, {"message": "Data source not found"})
    assert standin.call("GET", "/api/datasources/name/missing") == (404, {"message": "Data source not found"})
    status, listed = standin.call("GET", "/api/datasources")
    assert status == 200 and [ds["uid"] for ds in listed] == ["prometheus"]
    assert "secureJsonData" not in listed[0]


def test_update_version_locking(standin):
    standin.call("POST", "/api/datasources", prometheus())
    status, body = standin.call(
        "PUT", "/api/datasources/uid/prometheus", prometheus(version=1, url="http://a")
    )
    assert status == 200 and body["message"] == "Datasource updated"
    assert body["datasource"]["version"] == 2 and body["datasource"]["url"] == "http://a"
    assert standin.call("PUT", "/api/datasources/uid/prometheus", prometheus(version=1)) == (
        409,
        {"message": "Datasource has already been updated by someone else. Please reload and try again"},
    )
    assert (
        standin.call("PUT", "/api/datasources/uid/prometheus", prometheus(version=2))[1]["datasource"][
            "version"
        ]
        == 3
    )
    assert (
        standin.call("PUT", "/api/datasources/uid/prometheus", prometheus(version=7))[1]["datasource"][
            "version"
        ]
        == 8
    )
    assert (
        standin.call("PUT", "/api/datasources/uid/prometheus", prometheus())[1]["datasource"]["version"] == 1
    )


def test_update_is_full_replacement_but_keeps_secrets(standin):
    standin.call("POST", "/api/datasources", prometheus(jsonData={"a": 1}, secureJsonData={"password": "p"}))
    body = standin.call("PUT", "/api/datasources/uid/prometheus", prometheus(secureJsonData={"token": "t"}))[
        1
    ]["datasource"]
    assert body["jsonData"] == {} and body["secureJsonFields"] == {"password": True, "token": True}


def test_update_errors(standin):
    standin.call("POST", "/api/datasources", prometheus())
    standin.call("POST", "/api/datasources", prometheus(name="Other", uid="other"))
    assert standin.call("PUT", "/api/datasources/uid/other", prometheus(uid="other")) == (
        409,
        {"message": "Failed to update datasource: data source with the same name already exists"},
    )
    assert standin.call("PUT", "/api/datasources/uid/missing", prometheus()) == (
        404,
        {"message": "Data source not found"},
    )
    no_name = {"type": "prometheus", "access": "proxy"}
    assert standin.call("PUT", "/api/datasources/uid/other", no_name) == (
        400,
        {"message": "bad request data"},
    )


def test_delete_datasource(standin):
    standin.call("POST", "/api/datasources", prometheus())
    assert standin.call("DELETE", "/api/datasources/uid/prometheus")[0] == 200
    assert standin.call("DELETE", "/api/datasources/uid/prometheus") == (
        404,
        {"message": "Data source not found"},
    )


# --- dashboards and folders ------------------------------------------------------------------------


def test_save_dashboard_and_get_it(standin):
    body = dashboard(uid="iris-api", schemaVersion=39, templating={"list": []})
    status, saved = standin.call("POST", "/api/dashboards/db", body)
    assert status == 200
    assert saved == {
        "id": saved["id"],
        "uid": "iris-api",
        "url": "/d/iris-api/iris-api",
        "status": "success",
        "version": 1,
        "slug": "iris-api",
        "folderUid": "",
    }
    status, got = standin.call("GET", "/api/dashboards/uid/iris-api")
    assert status == 200
    assert got["dashboard"] == {**body["dashboard"], "id": saved["id"], "version": 1}
    meta = got["meta"]
    assert (meta["slug"], meta["url"], meta["folderUid"], meta["folderTitle"]) == (
        "iris-api",
        "/d/iris-api/iris-api",
        "",
        "General",
    )
    assert meta["version"] == 1 and meta["provisioned"] is False
    assert standin.call("GET", "/api/dashboards/uid/nope") == (404, {"message": "Dashboard not found"})


def test_dashboard_versions_and_overwrite(standin):
    standin.call("POST", "/api/dashboards/db", dashboard(uid="d1"))
    mismatch = (
        412,
        {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"},
    )
    assert standin.call("POST", "/api/dashboards/db", dashboard(uid="d1")) == mismatch
    assert standin.call("POST", "/api/dashboards/db", dashboard(uid="d1", version=5)) == mismatch
    assert standin.call("POST", "/api/dashboards/db", dashboard(uid="d1", version=1))[1]["version"] == 2
    same = {**dashboard(uid="d1"), "overwrite": True}
    assert standin.call("POST", "/api/dashboards/db", same)[1]["version"] == 3
    assert (
        standin.call("POST", "/api/dashboards/db", same)[1]["version"] == 4
    )  # unchanged content still bumps
    assert standin.call("GET", "/api/dashboards/uid/d1")[1]["meta"]["version"] == 4


def test_same_title_in_folder_makes_a_second_dashboard_even_with_overwrite(standin):
    # 11.3+ (PR #90687): no unique-title rule; the namesake is left alone, with or without overwrite.
    theirs = standin.call("POST", "/api/dashboards/db", dashboard(uid="theirs"))[1]
    saved = standin.call(
        "POST", "/api/dashboards/db", {**dashboard(uid="iris-api", tags=["x"]), "overwrite": True}
    )[1]
    assert (saved["uid"], saved["version"]) == ("iris-api", 1)
    assert saved["id"] != theirs["id"]
    theirs_now = standin.call("GET", "/api/dashboards/uid/theirs")[1]
    assert (theirs_now["meta"]["version"], theirs_now["dashboard"].get("tags")) == (1, None)
    hits = standin.call("GET", "/api/search?type=dash-db&query=Iris%20API")[1]
    assert sorted(h["uid"] for h in hits) == ["iris-api", "theirs"]


def test_a_folder_title_may_be_taken_twice(standin):
    # No unique folder title since 11.3: folder_mig.go drops UQE_folder_org_id_parent_uid_title; the
    # folder store's Create checks the uid only.
    standin.call("POST", "/api/folders", {"uid": "theirs", "title": "Iris"})
    status, folder = standin.call("POST", "/api/folders", {"uid": "iris", "title": "Iris"})
    assert (status, folder["uid"], folder["title"]) == (200, "iris", "Iris")
    assert sorted(f["uid"] for f in standin.call("GET", "/api/folders")[1]) == ["iris", "theirs"]
    assert standin.call("POST", "/api/folders", {"uid": "iris", "title": "Other"}) == (
        409,
        {"message": "a folder/dashboard with the same uid already exists"},
    )


def test_refresh_is_raised_to_min_refresh_interval(tmp_path):
    server = Standin(tmp_path, {"GF_DASHBOARDS_MIN_REFRESH_INTERVAL": "10s"}).start()
    try:
        for sent, stored in (("5s", "10s"), ("1m", "1m"), ("", ""), ("auto", "auto"), ("bogus", "10s")):
            server.call("POST", "/api/dashboards/db", {**dashboard(uid="r", refresh=sent), "overwrite": True})
            assert server.call("GET", "/api/dashboards/uid/r")[1]["dashboard"]["refresh"] == stored, sent
    finally:
        server.stop()


def test_default_min_refresh_interval_is_5s(standin):
    standin.call("POST", "/api/dashboards/db", dashboard(uid="r", refresh="1s"))
    assert standin.call("GET", "/api/dashboards/uid/r")[1]["dashboard"]["refresh"] == "5s"


HIDDEN = {"fieldConfig": {"overrides": [{"properties": [{"id": "custom.hideFrom", "value": {"viz": True}}]}]}}


def test_legacy_api_stores_and_returns_the_json_as_sent_in_12(tmp_path):
    # 12.x's legacy /api goes through the v0alpha1 dashboard API: no schema migration on write or read.
    server = Standin(tmp_path, {"STANDIN_GRAFANA_VERSION": "12.0.2"}).start()
    try:
        assert server.call("GET", "/api/health")[1]["version"] == "12.0.2"
        sent = dashboard(
            uid="m", schemaVersion=39, refresh=None, panels=[HIDDEN], timepicker={"time_options": []}
        )
        server.call("POST", "/api/dashboards/db", sent)
        got = server.call("GET", "/api/dashboards/uid/m")[1]["dashboard"]
        assert {k: v for k, v in got.items() if k not in ("id", "version")} == sent["dashboard"]
    finally:
        server.stop()


def test_dashboard_without_uid_duplicates(standin):
    first = standin.call("POST", "/api/dashboards/db", dashboard())[1]
    second = standin.call("POST", "/api/dashboards/db", dashboard())[1]
    assert first["uid"] != second["uid"] and first["id"] != second["id"]
    hits = standin.call("GET", "/api/search?type=dash-db&query=iris")[1]
    assert sorted(h["uid"] for h in hits) == sorted([first["uid"], second["uid"]])


def test_dashboard_errors(standin):
    assert standin.call("POST", "/api/dashboards/db", dashboard(id=999)) == (
        404,
        {"message": "Dashboard not found", "status": "not-found"},
    )
    assert standin.call("POST", "/api/dashboards/db", {**dashboard(), "folderUid": "ghost"}) == (
        400,
        {"message": "folder not found"},
    )
    assert standin.call("POST", "/api/dashboards/db", dashboard(title=" ")) == (
        400,
        {"message": "Dashboard title cannot be empty", "status": "empty-name"},
    )


def test_dashboard_does_not_resolve_inputs(standin):
    panel = {"datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}}
    standin.call("POST", "/api/dashboards/db", dashboard(uid="raw", panels=[panel]))
    assert standin.call("GET", "/api/dashboards/uid/raw")[1]["dashboard"]["panels"] == [panel]


def test_delete_dashboard(standin):
    standin.call("POST", "/api/dashboards/db", dashboard(uid="gone"))
    assert standin.call("DELETE", "/api/dashboards/uid/gone") == (
        200,
        {"title": "Iris API", "message": "Dashboard Iris API deleted", "uid": "gone"},
    )
    assert standin.call("DELETE", "/api/dashboards/uid/gone") == (404, {"message": "Dashboard not found"})


def test_folders(standin):
    status, folder = standin.call("POST", "/api/folders", {"uid": "iris", "title": "Iris Stack"})
    assert status == 200 and (folder["uid"], folder["title"]) == ("iris", "Iris Stack")
    assert folder["url"] == "/dashboards/f/iris/iris-stack"
    assert standin.call("POST", "/api/folders", {"uid": "iris", "title": "Again"}) == (
        409,
        {"message": "a folder/dashboard with the same uid already exists"},
    )
    assert standin.call("GET", "/api/folders/iris") == (200, folder)
    assert standin.call("GET", "/api/folders/nope") == (
        404,
        {"status": "not-found", "message": "folder not found"},
    )
    assert standin.call("GET", "/api/folders")[1] == [
        {"id": folder["id"], "uid": "iris", "title": "Iris Stack"}
    ]
    saved = standin.call("POST", "/api/dashboards/db", {**dashboard(uid="in-f"), "folderUid": "iris"})[1]
    assert saved["folderUid"] == "iris"
    meta = standin.call("GET", "/api/dashboards/uid/in-f")[1]["meta"]
    assert (meta["folderUid"], meta["folderTitle"]) == ("iris", "Iris Stack")
    assert [h["uid"] for h in standin.call("GET", "/api/search?type=dash-folder")[1]] == ["iris"]
    assert standin.call("GET", "/api/search?type=dash-db&query=nomatch")[1] == []


def test_slug_rule(standin):
    saved = standin.call(
        "POST", "/api/dashboards/db", dashboard(uid="s", title="  Iris -- API: Overview!! ")
    )[1]
    assert saved["slug"] == "iris-api-overview" and saved["url"] == "/d/s/iris-api-overview"


# --- persistence -----------------------------------------------------------------------------------


def test_state_survives_restart(standin):
    standin.call("POST", "/api/datasources", prometheus(secureJsonData={"password": "p"}))
    standin.call("POST", "/api/folders", {"uid": "f", "title": "F"})
    standin.call("POST", "/api/dashboards/db", {**dashboard(uid="keep"), "folderUid": "f"})
    standin.call("POST", "/api/dashboards/db", {**dashboard(uid="keep"), "folderUid": "f", "overwrite": True})
    before = standin.call("GET", "/api/dashboards/uid/keep")[1]
    state = json.loads((standin.data / "standin.json").read_text())
    assert list(state["dashboards"]) == ["keep"]
    assert [p.name for p in standin.data.iterdir()] == ["standin.json"]  # no temporary file left behind
    standin.restart()
    after = standin.call("GET", "/api/dashboards/uid/keep")[1]
    assert after["dashboard"] == before["dashboard"] and after["meta"]["version"] == 2
    ds = standin.call("GET", "/api/datasources/uid/prometheus")[1]
    assert ds["secureJsonFields"] == {"password": True} and ds["isDefault"] is True
    assert standin.call("GET", "/api/folders/f")[0] == 200
    assert (
        standin.call("POST", "/api/dashboards/db", dashboard(uid="new"))[1]["id"] > after["dashboard"]["id"]
    )


# --- file provisioning -----------------------------------------------------------------------------

DATASOURCES_YAML = """\
# provisioned by irisctl
apiVersion: 1
datasources:
- name: Prometheus   # the one the panels use
  type: prometheus
  uid: prometheus
  url: http://${PROM_HOST}:9090
  isDefault: true
  jsonData:
    httpMethod: 'POST'
    timeInterval: "15s"
  secureJsonData:
    basicAuthPassword: $PROM_PASSWORD
  editable: false
- name: Editable
  type: loki
  access: proxy
  url: http://loki:3100
  editable: true
"""

PROVIDERS_YAML = """\
apiVersion: 1
providers:
  - name: iris
    orgId: 1
    folder: Iris
    type: file
    disableDeletion: false
    allowUiUpdates: false
    options:
      path: {path}
"""


def write_provisioning(server, tmp_path):
    (server.provisioning / "datasources").mkdir(parents=True)
    (server.provisioning / "dashboards").mkdir(parents=True)
    (server.provisioning / "datasources" / "iris.yaml").write_text(DATASOURCES_YAML)
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "iris.json").write_text(json.dumps({"uid": "iris-prov", "title": "Iris Provisioned", "id": 42}))
    (server.provisioning / "dashboards" / "iris.yml").write_text(PROVIDERS_YAML.format(path=boards))
    return boards


def test_file_provisioning(tmp_path):
    server = Standin(tmp_path, {"PROM_HOST": "prometheus", "PROM_PASSWORD": "pw"})
    boards = write_provisioning(server, tmp_path)
    server.start()
    try:
        ds = server.call("GET", "/api/datasources/uid/prometheus")[1]
        assert ds["readOnly"] is True and ds["url"] == "http://prometheus:9090" and ds["access"] == "proxy"
        assert ds["jsonData"] == {"httpMethod": "POST", "timeInterval": "15s"} and ds["isDefault"] is True
        assert ds["secureJsonFields"] == {"basicAuthPassword": True}
        assert server.call("PUT", "/api/datasources/uid/prometheus", prometheus()) == (
            403,
            {"message": "Cannot update read-only data source"},
        )
        assert server.call("DELETE", "/api/datasources/uid/prometheus")[0] == 403
        assert server.call("GET", "/api/datasources/name/Editable")[1]["readOnly"] is False

        got = server.call("GET", "/api/dashboards/uid/iris-prov")[1]
        assert got["meta"]["provisioned"] is True and got["meta"]["folderTitle"] == "Iris"
        assert got["dashboard"]["id"] != 42 and got["meta"]["version"] == 1
        assert server.call(
            "POST", "/api/dashboards/db", {**dashboard(uid="iris-prov"), "overwrite": True}
        ) == (400, {"message": "Cannot save provisioned dashboard"})
        assert server.call("DELETE", "/api/dashboards/uid/iris-prov") == (
            400,
            {"message": "provisioned dashboard cannot be deleted"},
        )

        server.restart()  # unchanged files: nothing new, no version bump
        assert server.call("GET", "/api/dashboards/uid/iris-prov")[1]["meta"]["version"] == 1
        assert [f["title"] for f in server.call("GET", "/api/folders")[1]] == ["Iris"]

        (boards / "iris.json").write_text(json.dumps({"uid": "iris-prov", "title": "Iris v2"}))
        server.restart()
        got = server.call("GET", "/api/dashboards/uid/iris-prov")[1]
        assert (got["dashboard"]["title"], got["meta"]["version"]) == ("Iris v2", 2)

        (boards / "iris.json").unlink()
        server.restart()
        assert server.call("GET", "/api/dashboards/uid/iris-prov")[0] == 404
    finally:
        server.stop()


def test_allow_ui_updates_provisioned_meta(tmp_path):
    # pkg/api/dashboard.go GetDashboard: provisioned only without allowUiUpdates; provisionedExternalId
    # (the file relative to the provider's path) whenever a file provisioned it.
    server = Standin(tmp_path)
    boards = write_provisioning(server, tmp_path)
    yaml = server.provisioning / "dashboards" / "iris.yml"
    yaml.write_text(yaml.read_text().replace("allowUiUpdates: false", "allowUiUpdates: true"))
    server.start()
    try:
        meta = server.call("GET", "/api/dashboards/uid/iris-prov")[1]["meta"]
        assert meta["provisioned"] is False and meta["provisionedExternalId"] == "iris.json"
        status, saved = server.call(
            "POST",
            "/api/dashboards/db",
            {**dashboard(uid="iris-prov"), "folderUid": meta["folderUid"], "overwrite": True},
        )
        assert status == 200 and saved["version"] == 2
        after = server.call("GET", "/api/dashboards/uid/iris-prov")[1]["meta"]
        assert after["provisionedExternalId"] == "iris.json"  # an API save keeps the provisioning record
        assert boards.is_dir()
    finally:
        server.stop()


def test_provisioning_folder_uid_beside_a_folder_of_the_same_title(tmp_path):
    server = Standin(tmp_path)
    write_provisioning(server, tmp_path)
    yaml = server.provisioning / "dashboards" / "iris.yml"
    provider = yaml.read_text().replace("folder: Iris", "folder: Iris\n    folderUid: iris")
    yaml.unlink()
    server.start()
    try:  # someone else's "Iris" folder exists before the provider runs
        server.call("POST", "/api/folders", {"uid": "theirs", "title": "Iris"})
        yaml.write_text(provider)
        server.restart()
        # file_reader.go getOrCreateFolder looks the folder up by uid and creates it (titles may repeat)
        meta = server.call("GET", "/api/dashboards/uid/iris-prov")[1]["meta"]
        assert (meta["folderUid"], meta["folderTitle"]) == ("iris", "Iris")
        assert sorted(f["uid"] for f in server.call("GET", "/api/folders")[1]) == ["iris", "theirs"]
    finally:
        server.stop()


def test_provisioning_runs_in_the_background_after_the_port_opens(tmp_path):
    server = Standin(tmp_path, {"STANDIN_PROVISIONING_DELAY": "1.5"})
    write_provisioning(server, tmp_path)
    server.start(wait_provisioned=False)
    try:
        # /api/health answers while neither the datasource nor the dashboard exists yet (11.6.3+).
        assert server.call("GET", "/api/health")[0] == 200
        assert server.call("GET", "/api/datasources/uid/prometheus")[0] == 404
        assert server.call("GET", "/api/dashboards/uid/iris-prov")[0] == 404
        server.wait_provisioned()
        assert server.call("GET", "/api/datasources/uid/prometheus")[0] == 200
        assert server.call("GET", "/api/dashboards/uid/iris-prov")[0] == 200
    finally:
        server.stop()


def test_the_file_provisioner_takes_over_a_dashboard_the_api_made_first(tmp_path):
    server = Standin(tmp_path, {"STANDIN_PROVISIONING_DELAY": "1"})
    write_provisioning(server, tmp_path)
    server.start(wait_provisioned=False)
    try:
        assert (
            server.call("POST", "/api/dashboards/db", dashboard(uid="iris-prov", title="From the API"))[0]
            == 200
        )
        server.wait_provisioned()
        got = server.call("GET", "/api/dashboards/uid/iris-prov")[1]
        assert (got["dashboard"]["title"], got["meta"]["version"]) == ("Iris Provisioned", 2)
        assert got["meta"]["provisionedExternalId"] == "iris.json"
    finally:
        server.stop()


def poll_until(check, seconds):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_dashboard_files_are_polled_and_saved_again_only_when_their_checksum_changes(tmp_path):
    server = Standin(tmp_path)
    boards = write_provisioning(server, tmp_path)
    yaml = server.provisioning / "dashboards" / "iris.yml"
    text = yaml.read_text().replace("allowUiUpdates: false", "allowUiUpdates: true")
    yaml.write_text(text.replace("    options:", "    updateIntervalSeconds: 1\n    options:"))
    server.start()
    try:

        def version():
            return server.call("GET", "/api/dashboards/uid/iris-prov")[1]["meta"]["version"]

        assert version() == 1
        # Touched, same bytes: no save (the checksum is compared, not mtime).
        file = boards / "iris.json"
        os.utime(file, (time.time() + 60, time.time() + 60))
        time.sleep(2.5)
        assert version() == 1
        # An API save (allowUiUpdates) stays while the file is unchanged.
        status, _ = server.call(
            "POST",
            "/api/dashboards/db",
            {**dashboard(uid="iris-prov", title="Edited", version=1), "folderUid": ""},
        )
        assert status == 200
        time.sleep(2.5)
        got = server.call("GET", "/api/dashboards/uid/iris-prov")[1]
        assert (got["dashboard"]["title"], got["meta"]["version"]) == ("Edited", 2)
        # The file changes: the next poll saves it.
        file.write_text(json.dumps({"uid": "iris-prov", "title": "Iris v3"}))
        poll_until(lambda: version() == 3, 5)
        assert server.call("GET", "/api/dashboards/uid/iris-prov")[1]["dashboard"]["title"] == "Iris v3"
    finally:
        server.stop()


def test_broken_provisioning_file_stops_startup(tmp_path):
    server = Standin(tmp_path)
    (server.provisioning / "datasources").mkdir(parents=True)
    (server.provisioning / "datasources" / "bad.yaml").write_text(
        "datasources:\n- name: x\n  url: |\n    y\n"
    )
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--port", "0", "--data", str(server.data)],
        env={**os.environ, **server.env},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert proc.returncode != 0 and "bad.yaml" in proc.stderr


# --- the YAML subset -------------------------------------------------------------------------------


def load_module():
    spec = importlib.util.spec_from_file_location("standin", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


YAML_SAMPLES = [
    DATASOURCES_YAML,
    PROVIDERS_YAML.format(path="/var/lib/grafana/dashboards"),
    "a:\n  b:\n    - 1\n    - -2.5\n    - 'it''s'\n  c: [x, 'y', 3]\n  d: {k: v, n: null}\ne: ~\nf: \"q # not\"\n",
    "list:\n  -\n    name: a\n  - - nested\n    - more\nempty: []\nurl: http://h:1/p#frag\n",
    '---\nflag: false\nquoted: "tab\\tand \\"quote\\""\ncolon: \'a: b\'\n',
]


# The project's own provisioning files are what the stand-in reads in the stack's tests.
PROVISIONING_FILES = sorted(
    (Path(__file__).resolve().parents[2] / "monitoring" / "grafana" / "provisioning").rglob("*.y*ml")
)


@pytest.mark.parametrize("text", YAML_SAMPLES)
def test_yaml_subset_matches_pyyaml(text):
    assert load_module().parse_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize("path", PROVISIONING_FILES, ids=lambda p: p.name)
def test_yaml_subset_reads_the_projects_provisioning_files_as_pyyaml_does(path):
    text = path.read_text()
    assert load_module().parse_yaml(text) == yaml.safe_load(text)


def test_the_projects_provisioning_files_are_found():
    assert {p.parent.name for p in PROVISIONING_FILES} == {"dashboards", "datasources"}


def test_yaml_subset_explicit():
    parse = load_module().parse_yaml
    assert parse(YAML_SAMPLES[2]) == {
        "a": {"b": [1, -2.5, "it's"], "c": ["x", "y", 3], "d": {"k": "v", "n": None}},
        "e": None,
        "f": "q # not",
    }
    assert parse(PROVIDERS_YAML.format(path="/p"))["providers"][0]["options"] == {"path": "/p"}
    with pytest.raises(ValueError):
        parse("a:\n\tb: 1\n")


# --- annotations -----------------------------------------------------------------------------------


def test_annotation_added_and_found_by_tags(standin):
    status, added = standin.call(
        "POST",
        "/api/annotations",
        {"time": 1000, "tags": ["irisctl", "release", "api"], "text": "release api: a → b"},
    )
    assert (status, added["message"]) == (200, "Annotation added")
    standin.call(
        "POST", "/api/annotations", {"time": 2000, "tags": ["irisctl", "release", "frontend"], "text": "ui"}
    )
    standin.call("POST", "/api/annotations", {"time": 3000, "tags": ["other"], "text": "not ours"})
    status, found = standin.call("GET", "/api/annotations?tags=irisctl&tags=release")
    assert status == 200
    assert [a["text"] for a in found] == ["ui", "release api: a → b"]  # newest first
    first = found[1]
    assert first["id"] == added["id"] and first["timeEnd"] == first["time"] == 1000
    assert first["tags"] == ["irisctl", "release", "api"] and first["dashboardId"] == 0
    # every tag must match, unless matchAny
    assert [a["text"] for a in standin.call("GET", "/api/annotations?tags=api&tags=frontend")[1]] == []
    assert len(standin.call("GET", "/api/annotations?tags=api&tags=frontend&matchAny=true")[1]) == 2
    assert [a["text"] for a in standin.call("GET", "/api/annotations?from=1500&to=2500")[1]] == ["ui"]
    assert len(standin.call("GET", "/api/annotations?limit=1")[1]) == 1


def test_annotation_needs_text_and_editor(standin):
    assert standin.call("POST", "/api/annotations", {"tags": ["x"], "text": ""}) == (
        400,
        {"message": "Failed to save annotation"},
    )
    assert standin.call("POST", "/api/annotations", {"text": 5}) == (400, {"message": "bad request data"})
    status, body = standin.call("POST", "/api/annotations", {"text": "t"}, token="view-tok")
    assert status == 403 and "annotations:create" in body["message"]
    assert standin.call("POST", "/api/annotations", {"text": "t"}, token="ed-tok")[0] == 200
    assert standin.call("GET", "/api/annotations", token="view-tok")[0] == 200


def test_annotation_time_defaults_to_now_and_survives_a_restart(standin):
    before = int(time.time() * 1000)
    standin.call("POST", "/api/annotations", {"text": "now"})
    standin.restart()
    (item,) = standin.call("GET", "/api/annotations")[1]
    assert before <= item["time"] == item["timeEnd"] <= int(time.time() * 1000)


def test_annotation_query_is_evaluated_as_grafanas_sql_store_does(standin):
    # pkg/services/annotations/annotationsimpl/xorm_store.go Get; pkg/api/annotations.go GetAnnotations.
    standin.call("POST", "/api/dashboards/db", dashboard(uid="board"))
    add = [
        {
            "time": 1000,
            "timeEnd": 5000,
            "tags": ["release:api", "irisctl"],
            "text": "long",
            "dashboardUID": "board",
        },
        {"time": 3000, "tags": ["release:ui"], "text": "short"},
        {"time": 4000, "tags": ["release:api", "release:ui"], "text": "both"},
    ]
    for body in add:
        assert standin.call("POST", "/api/annotations", body)[0] == 200

    def texts(query):
        status, found = standin.call("GET", "/api/annotations" + query)
        assert status == 200, found
        return [a["text"] for a in found]

    # Newest end first, then newest start: "long" ends last.
    assert texts("") == ["long", "both", "short"]
    # from/to filter only together; an overlap counts.
    assert texts("?from=4500") == ["long", "both", "short"]
    assert texts("?from=4500&to=6000") == ["long"]
    # A bare key matches every value of it; each wanted tag must be matched by exactly one tag.
    assert texts("?tags=release") == ["long", "short"]
    assert texts("?tags=release:api") == ["long", "both"]
    assert texts("?tags=release:api&tags=irisctl") == ["long"]
    assert texts("?tags=irisctl&tags=release:ui&matchAny=true") == ["long", "both", "short"]
    # dashboardUID: resolved to the dashboard's id, and named in every answer.
    assert texts("?dashboardUID=board") == ["long"]
    assert standin.call("GET", "/api/annotations?dashboardUID=board")[1][0]["dashboardUID"] == "board"
    assert standin.call("GET", "/api/annotations?dashboardUID=nope") == (
        400,
        {"message": "Invalid dashboard UID in annotation request"},
    )
    assert texts("?type=annotation") == ["long", "both", "short"]
    assert texts("?type=alert") == []
    assert texts("?limit=2") == ["long", "both"]
    assert texts("?limit=0") == ["long", "both", "short"]
