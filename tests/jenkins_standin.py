"""A Jenkins stand-in for the tests: a threaded http.server on 127.0.0.1 (free port) that answers
what python-jenkins asks, the way Jenkins answers it (read jenkins/__init__.py of python-jenkins).

    GET  /                                  200 with the X-Jenkins header (403 for anonymous when secured)
    GET  crumbIssuer/api/json               crumb; every POST without it -> 403 (crumbs=False: 404)
    GET  api/json, job/a/api/json           items, folders nested (job/a/job/b)
    POST [job/a/]createItem?name=N          XML body (text/xml) or form mode=...; 400 if it exists, 404 no folder
    GET/POST job/../config.xml              read / replace
    POST job/../doDelete|enable|disable     302 redirects, as Jenkins does
    POST job/../build|buildWithParameters   201 + Location .../queue/item/<n>/; 409 disabled; 500 parameters
                                            on a job whose config.xml defines none
    GET  queue/item/<n>/api/json            `why` while waiting, then `executable`; `cancelled`
    POST queue/cancelItem?id=<n>
    GET  job/../<b>/api/json                result null while building
    GET  job/../<b>/consoleText
    GET  computer/api/json                  nodes with labels

Basic auth: users {name: token}; with security on, anonymous is refused (403), bad credentials 401.
A build runs in a thread through `executor(job, params) -> (result, console)`; the default gives
SUCCESS (or `results[job]`). `posts` records every POST (write request) so tests can assert none.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, quote, unquote, urlsplit

FOLDER_CLASS = "com.cloudbees.hudson.plugins.folder.Folder"
JOB_CLASS = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
CRUMB_FIELD = "Jenkins-Crumb"


@dataclass
class Build:
    number: int
    params: Dict[str, str]
    started: float
    result: Optional[str] = None
    building: bool = True
    console: str = ""
    duration: int = 0


@dataclass
class Item:
    kind: str                 # folder | job
    config: str
    builds: Dict[int, Build] = field(default_factory=dict)
    next_build: int = 1

    @property
    def disabled(self) -> bool:
        return bool(re.search(r"<disabled>\s*true\s*</disabled>", self.config))

    def parameters(self) -> Optional[List[Tuple[str, str]]]:
        """(name, default) of the ParametersDefinitionProperty, None when the job defines none."""
        try:
            root = ET.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", self.config))
        except ET.ParseError:
            return None
        prop = root.find("properties/hudson.model.ParametersDefinitionProperty/parameterDefinitions")
        if prop is None:
            return None
        return [(d.findtext("name") or "", d.findtext("defaultValue") or "") for d in prop]

    def label(self) -> Optional[str]:
        m = re.search(r"agent\s*\{\s*label\s+'([^']+)'", unescape_xml(self.config))
        return m.group(1) if m else None


@dataclass
class QueueItem:
    id: int
    job: str
    params: Dict[str, str]
    queued: float
    cancelled: bool = False
    build: Optional[int] = None


def unescape_xml(text: str) -> str:
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&apos;", "'")
            .replace("&#34;", '"').replace("&quot;", '"').replace("&amp;", "&"))


class JenkinsStandin:
    def __init__(self, users: Optional[Dict[str, str]] = None, security: bool = True, crumbs: bool = True,
                 queue_delay: float = 0.05, build_seconds: float = 0.05,
                 executor: Optional[Callable[[str, Dict[str, str]], Tuple[str, str]]] = None,
                 nodes: Optional[List[dict]] = None, version: str = "2.452.3", resave: bool = False):
        self.users = {"admin": "standin-token-0123456789"} if users is None else users
        self.security = security
        self.crumbs = crumbs
        self.queue_delay = queue_delay
        self.build_seconds = build_seconds
        self.executor = executor
        self.results: Dict[str, str] = {}
        self.hold_queue = False
        self.nodes = nodes if nodes is not None else [
            {"name": "builder-1", "labels": ["local-builder", "rhel5-builder", "rhel6-builder",
                                             "rhel7-builder", "relman"], "offline": False}]
        self.version = version
        # resave: store config.xml the way a real Jenkins re-serialises it on every save (XStream and its
        # plugins' own forms), and record declarative job actions in <actions> after each build
        self.resave = resave
        self.trigger_errors: Dict[str, Tuple[int, str]] = {}   # job -> (status, Jenkins' message) on a trigger
        self.crumb = secrets.token_hex(16)
        self.items: Dict[str, Item] = {}
        self.queue: Dict[int, QueueItem] = {}
        self.next_queue = 1
        self.lock = threading.RLock()
        self.posts: List[Tuple[str, str]] = []
        self.requests: List[Tuple[str, str]] = []
        self._server: Optional[ThreadingHTTPServer] = None
        self._stop = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "JenkinsStandin":
        standin = self

        class Handler(_Handler):
            pass
        Handler.standin = standin
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self._ticker, daemon=True).start()
        return self

    def stop(self):
        self._stop.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def reset_counts(self):
        with self.lock:
            self.posts.clear()
            self.requests.clear()

    @property
    def write_count(self) -> int:
        return len(self.posts)

    # ------------------------------------------------------------ state helpers

    def item_url(self, name: str) -> str:
        return self.url + "".join(f"job/{quote(p)}/" for p in name.split("/"))

    def add(self, name: str, config: str, kind: Optional[str] = None):
        """Put an item on the server directly (as if made by hand), bypassing HTTP."""
        with self.lock:
            self.items[name] = Item(kind or _kind_of(config), config)

    def children(self, parent: Optional[str]) -> List[str]:
        pre = "" if not parent else parent + "/"
        return sorted(n for n in self.items if n.startswith(pre) and "/" not in n[len(pre):])

    def _label_served(self, label: Optional[str]) -> Tuple[bool, str]:
        if label is None:
            return True, ""
        nodes = [n for n in self.nodes if label in n["labels"]]
        if not nodes:
            return False, f"There are no nodes with the label \u2018{label}\u2019"
        if all(n.get("offline") for n in nodes):
            return False, f"All nodes of label \u2018{label}\u2019 are offline"
        return True, ""

    def _ticker(self):
        while not self._stop.is_set():
            self.tick()
            time.sleep(0.01)

    def tick(self):
        now = time.monotonic()
        with self.lock:
            for q in self.queue.values():
                if q.cancelled or q.build is not None or self.hold_queue:
                    continue
                item = self.items.get(q.job)
                if item is None or now - q.queued < self.queue_delay:
                    continue
                ok, _ = self._label_served(item.label())
                if not ok:
                    continue
                n = item.next_build
                item.next_build += 1
                b = Build(n, dict(q.params), time.time())
                item.builds[n] = b
                q.build = n
                threading.Thread(target=self._run, args=(q.job, b), daemon=True).start()

    def _run(self, job: str, b: Build):
        t0 = time.monotonic()
        if self.executor:
            try:
                result, console = self.executor(job, dict(b.params))
            except Exception as exc:  # the stand-in reports a crashed executor as a failed build
                result, console = "FAILURE", f"executor crashed: {exc!r}"
        else:
            result = self.results.get(job, "SUCCESS")
            console = "\n".join([f"Started by user {next(iter(self.users), 'anonymous')}",
                                 "[Pipeline] Start of Pipeline",
                                 *[f"{k}={v}" for k, v in sorted(b.params.items())],
                                 "[Pipeline] End of Pipeline"])
        rest = self.build_seconds - (time.monotonic() - t0)
        if rest > 0:
            time.sleep(rest)
        with self.lock:
            if self.resave and job in self.items:
                self.items[job].config = add_declarative_actions(self.items[job].config)
            if b.result is None:
                b.result = result
                b.console = console.rstrip("\n") + f"\nFinished: {result}\n"
            b.building = False
            b.duration = int((time.monotonic() - t0) * 1000)


# What a real Jenkins does to a config.xml when it saves it (seen on 2.4xx cores with these plugins).
PLUGIN_VERSIONS = {"flow-definition": "workflow-job@1400.v7fd111b_ec82f",
                   "definition": "workflow-cps@3969.vdc9d3a_efcc6d",
                   "hudson.security.AuthorizationMatrixProperty": "matrix-auth@3.2.2",
                   "com.cloudbees.hudson.plugins.folder.Folder": "cloudbees-folder@6.928.v7c780211d66e"}
DECLARATIVE = "org.jenkinsci.plugins.pipeline.modeldefinition.actions"
DECLARATIVE_PLUGIN = "pipeline-model-definition@2.2198.v41dd8ef6dd56"


def _permission_id(el) -> str:
    """matrix-auth orders entries like GROUP:hudson.model.Item.Build:name by the permission id."""
    parts = (el.text or "").split(":")
    return ":".join(parts[1:]) if len(parts) >= 3 else el.text or ""


def resave_like_jenkins(text: str) -> str:
    """XStream's serialisation: version 1.1 declaration, plugin@version attributes, the matrix-auth
    plugin's permissions sorted by permission id, <removeLastBuild> added to the log rotator (newer
    cores), empty elements written self-closed, two-space indentation, &apos; escapes."""
    root = ET.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text))
    for el in root.iter():
        if el.tag in PLUGIN_VERSIONS:
            el.set("plugin", PLUGIN_VERSIONS[el.tag])
        perms = [c for c in el if c.tag == "permission"]
        if perms:
            for c in perms:
                el.remove(c)
            el.extend(sorted(perms, key=_permission_id))
        if el.tag == "strategy" and el.get("class") == "hudson.tasks.LogRotator" and el.find("removeLastBuild") is None:
            ET.SubElement(el, "removeLastBuild").text = "false"
        if el.text is not None and not el.text.strip() and len(el) == 0:
            el.text = None
    ET.indent(root, "  ")
    body = ET.tostring(root, encoding="unicode", short_empty_elements=True).replace("&#39;", "&apos;")
    return "<?xml version='1.1' encoding='UTF-8'?>\n" + body


def add_declarative_actions(text: str) -> str:
    """After a build of a declarative pipeline, Jenkins keeps these actions in the job's config.xml."""
    if "<flow-definition" not in text or DECLARATIVE in text:
        return text
    root = ET.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text))
    actions = root.find("actions")
    if actions is None:
        actions = ET.Element("actions")
        root.insert(0, actions)
    ET.SubElement(actions, f"{DECLARATIVE}.DeclarativeJobAction", plugin=DECLARATIVE_PLUGIN)
    tracker = ET.SubElement(actions, f"{DECLARATIVE}.DeclarativeJobPropertyTrackerAction", plugin=DECLARATIVE_PLUGIN)
    for name in ("jobProperties", "triggers", "parameters", "options"):
        ET.SubElement(tracker, name)
    ET.indent(root, "  ")
    return "<?xml version='1.1' encoding='UTF-8'?>\n" + ET.tostring(root, encoding="unicode")


def _kind_of(config: str) -> str:
    head = re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", config)[:200]
    return "folder" if head.startswith(f"<{FOLDER_CLASS}") else "job"


class _Response(Exception):
    def __init__(self, code: int, body: str = "", ctype: str = "text/html;charset=utf-8", headers=None,
                 reason: Optional[str] = None):
        self.code, self.body, self.ctype, self.headers = code, body, ctype, headers or {}
        self.reason = reason   # Jenkins puts some messages in the status line (a refused crumb)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True      # one segment per answer: no 40 ms delayed-ACK stalls
    wbufsize = -1                       # headers and body leave in one write (flushed per request)
    standin: JenkinsStandin = None

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    # ------------------------------------------------------------ plumbing

    def _send(self, code, body="", ctype="text/html;charset=utf-8", headers=None, reason=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code, reason)
        self.send_header("X-Jenkins", self.standin.version)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method):
        s = self.standin
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        with s.lock:
            s.requests.append((method, parts.path))
            if method == "POST":
                s.posts.append((method, self.path))
        try:
            user = self._auth()
            if method == "POST" and s.crumbs and self.headers.get(CRUMB_FIELD) != s.crumb:
                raise _Response(403, "No valid crumb was included in the request",
                                reason="No valid crumb was included in the request")
            code, out, ctype, headers = self._route(method, unquote(parts.path), query, body, user)
        except _Response as r:
            code, out, ctype, headers = r.code, r.body, r.ctype, r.headers
            self._send(code, out, ctype, headers, r.reason)
            return
        self._send(code, out, ctype, headers)

    def _auth(self) -> Optional[str]:
        s = self.standin
        h = self.headers.get("Authorization")
        if h and h.startswith("Basic "):
            try:
                user, _, token = base64.b64decode(h[6:]).decode().partition(":")
            except Exception:
                raise _Response(401, "Invalid authorization header")
            if s.users.get(user) != token or not token:
                raise _Response(401, "Invalid password/token for user: " + user,
                                headers={"WWW-Authenticate": 'Basic realm="Jenkins"'})
            return user
        if s.security:
            raise _Response(403, "Authentication required")
        return None

    def _json(self, obj, code=200):
        return code, json.dumps(obj), "application/json;charset=utf-8", {}

    # ------------------------------------------------------------ routes

    def _route(self, method, path, query, body, user):
        s = self.standin
        segs = [p for p in path.strip("/").split("/") if p != ""]
        names = []
        while len(segs) >= 2 and segs[0] == "job":
            names.append(segs[1])
            segs = segs[2:]
        name = "/".join(names)
        rest = "/".join(segs)
        with s.lock:
            if not names:
                return self._root(method, rest, query, body, user)
            item = s.items.get(name)
            if item is None:
                raise _Response(404, "Not Found")
            parent = "/".join(names[:-1]) or None
            if rest in ("", "api/json") and method == "GET":
                if rest == "":
                    return 200, f"<html><body>{name}</body></html>", "text/html;charset=utf-8", {}
                return self._json(self._item_json(name, item))
            if rest == "config.xml":
                if method == "GET":
                    return 200, item.config, "application/xml;charset=utf-8", {}
                text = body.decode("utf-8")
                _parse_or_500(text)
                item.config = resave_like_jenkins(text) if self.standin.resave else text
                return 200, "", "text/html;charset=utf-8", {}
            if method == "POST" and rest == "createItem" and item.kind == "folder":
                return self._create(name, query, body)
            if method == "POST" and rest == "doDelete":
                for n in [n for n in s.items if n == name or n.startswith(name + "/")]:
                    del s.items[n]
                loc = s.item_url(parent) if parent else s.url
                return 302, "", "text/html", {"Location": loc}
            if method == "POST" and rest in ("enable", "disable") and item.kind == "job":
                flag = "true" if rest == "disable" else "false"
                if "<disabled>" in item.config:
                    item.config = re.sub(r"<disabled>[^<]*</disabled>", f"<disabled>{flag}</disabled>", item.config)
                else:
                    item.config = item.config.replace("</flow-definition>", f"  <disabled>{flag}</disabled>\n"
                                                                            "</flow-definition>")
                return 302, "", "text/html", {"Location": s.item_url(name)}
            if method == "POST" and rest in ("build", "buildWithParameters") and item.kind == "job":
                return self._build(name, item, rest, query, body)
            m = re.fullmatch(r"(\d+|lastBuild)(?:/(api/json|consoleText|stop))?", rest)
            if m and item.kind == "job":
                num = max(item.builds) if m.group(1) == "lastBuild" and item.builds else \
                    (int(m.group(1)) if m.group(1).isdigit() else None)
                b = item.builds.get(num)
                if b is None:
                    raise _Response(404, "Not Found")
                what = m.group(2) or ""
                if what == "api/json" and method == "GET":
                    return self._json(self._build_json(name, b))
                if what == "consoleText" and method == "GET":
                    text = b.console if not b.building else f"Started\n[Pipeline] running #{b.number}\n"
                    return 200, text, "text/plain;charset=utf-8", {}
                if what == "stop" and method == "POST":
                    if b.building:
                        b.result, b.console = "ABORTED", "Aborted by user\nFinished: ABORTED\n"
                    return 302, "", "text/html", {"Location": s.item_url(name) + f"{b.number}/"}
                if what == "" and method == "GET":
                    return 200, f"<html>#{b.number}</html>", "text/html", {}
            raise _Response(404 if method == "GET" else 405, "Not Found")

    def _root(self, method, rest, query, body, user):
        s = self.standin
        if method == "GET":
            if rest == "":
                return 200, "<html><body>Jenkins stand-in</body></html>", "text/html;charset=utf-8", {}
            if rest == "api/json":
                return self._json({"_class": "hudson.model.Hudson", "mode": "NORMAL",
                                   "jobs": [self._tree_entry(n) for n in s.children(None)]})
            if rest == "crumbIssuer/api/json":
                if not s.crumbs:
                    raise _Response(404, "Not Found")
                return self._json({"_class": "hudson.security.csrf.DefaultCrumbIssuer", "crumb": s.crumb,
                                   "crumbRequestField": CRUMB_FIELD})
            if rest == "me/api/json":
                return self._json({"_class": "hudson.model.User", "id": user or "anonymous",
                                   "fullName": user or "anonymous"})
            if rest == "computer/api/json":
                return self._json({"_class": "hudson.model.ComputerSet", "computer": [
                    {"_class": "hudson.slaves.SlaveComputer", "displayName": n["name"], "description": "",
                     "assignedLabels": [{"name": lb} for lb in [n["name"]] + list(n["labels"])],
                     "idle": True, "offline": bool(n.get("offline")), "offlineCause": None,
                     "temporarilyOffline": False, "icon": "computer.png", "numExecutors": 2}
                    for n in s.nodes]})
            if rest == "queue/api/json":
                return self._json({"items": [self._queue_json(q) for q in s.queue.values()
                                             if q.build is None and not q.cancelled]})
            m = re.fullmatch(r"queue/item/(\d+)/api/json", rest)
            if m:
                q = s.queue.get(int(m.group(1)))
                if q is None:
                    raise _Response(404, "Not Found")
                return self._json(self._queue_json(q))
            raise _Response(404, "Not Found")
        if rest == "createItem":
            return self._create(None, query, body)
        if rest == "queue/cancelItem":
            q = s.queue.get(int(query.get("id", "0") or 0))
            if q is None:
                raise _Response(404, "Not Found")
            if q.build is None:
                q.cancelled = True
            return 302, "", "text/html", {"Location": s.url + "queue/"}
        raise _Response(404, "Not Found")

    def _create(self, folder, query, body):
        s = self.standin
        short = query.get("name", "")
        ctype = self.headers.get("Content-Type", "")
        if not short or "/" in short:
            raise _Response(400, "No name is specified")
        if "xml" not in ctype:
            form = dict(parse_qsl(body.decode()))
            mode = form.get("mode") or query.get("mode")
            short = form.get("name", short).split("/")[-1]
            if mode is None:
                raise _Response(400, "No mode given")
            config = (f"<?xml version='1.1' encoding='UTF-8'?>\n<{FOLDER_CLASS}>\n  <description></description>\n"
                      f"</{FOLDER_CLASS}>" if mode == FOLDER_CLASS else
                      "<?xml version='1.1' encoding='UTF-8'?>\n<flow-definition>\n  <description></description>\n"
                      "  <disabled>false</disabled>\n</flow-definition>")
            code = 302
        else:
            config = body.decode("utf-8")
            _parse_or_500(config)
            if s.resave:
                config = resave_like_jenkins(config)
            code = 200
        full = f"{folder}/{short}" if folder else short
        if full in s.items:
            raise _Response(400, f"A job already exists with the name \u2018{short}\u2019")
        s.items[full] = Item(_kind_of(config), config)
        return code, "", "text/html", ({"Location": s.item_url(full)} if code == 302 else {})

    def _build(self, name, item, how, query, body):
        s = self.standin
        if name in s.trigger_errors:
            code, message = s.trigger_errors[name]
            raise _Response(code, message, reason=message)
        if item.disabled:
            raise _Response(409, "Job is disabled")
        defined = item.parameters()
        given = dict(query)
        if body and "xml" not in self.headers.get("Content-Type", ""):
            given.update(parse_qsl(body.decode()))
        given.pop("token", None)
        given.pop("delay", None)
        if how == "buildWithParameters":
            if defined is None:
                raise _Response(500, "java.lang.IllegalStateException: This job is not parameterized")
        params = {}
        for pname, default in defined or []:
            params[pname] = given.get(pname, default)
        qid = s.next_queue
        s.next_queue += 1
        s.queue[qid] = QueueItem(qid, name, params, time.monotonic())
        return 201, "", "text/html", {"Location": f"{s.url}queue/item/{qid}/"}

    # ------------------------------------------------------------ JSON shapes

    def _tree_entry(self, name):
        s = self.standin
        item = s.items[name]
        short = name.split("/")[-1]
        if item.kind == "folder":
            return {"_class": FOLDER_CLASS, "name": short, "url": s.item_url(name),
                    "jobs": [self._tree_entry(c) for c in s.children(name)]}
        return {"_class": JOB_CLASS, "name": short, "url": s.item_url(name), "color": self._color(item)}

    @staticmethod
    def _color(item):
        if item.disabled:
            return "disabled"
        if not item.builds:
            return "notbuilt"
        last = item.builds[max(item.builds)]
        base = {"SUCCESS": "blue", "FAILURE": "red", "UNSTABLE": "yellow", "ABORTED": "aborted"}.get(
            last.result or "", "notbuilt")
        return base + ("_anime" if last.building else "")

    def _item_json(self, name, item):
        s = self.standin
        short = name.split("/")[-1]
        if item.kind == "folder":
            return {"_class": FOLDER_CLASS, "name": short, "fullName": name, "url": s.item_url(name),
                    "description": _description(item.config),
                    "jobs": [self._tree_entry(c) for c in s.children(name)]}
        builds = [{"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": n,
                   "url": s.item_url(name) + f"{n}/"} for n in sorted(item.builds, reverse=True)]
        defined = item.parameters()
        props = [] if defined is None else [{"_class": "hudson.model.ParametersDefinitionProperty",
                                            "parameterDefinitions": [
                                                {"name": n, "defaultParameterValue": {"value": d},
                                                 "type": "StringParameterDefinition"} for n, d in defined]}]
        return {"_class": JOB_CLASS, "name": short, "fullName": name, "displayName": short,
                "url": s.item_url(name), "description": _description(item.config),
                "buildable": not item.disabled, "color": self._color(item), "builds": builds,
                "firstBuild": builds[-1] if builds else None, "lastBuild": builds[0] if builds else None,
                "nextBuildNumber": item.next_build, "inQueue": any(
                    q.job == name and q.build is None and not q.cancelled for q in s.queue.values()),
                "property": props}

    def _queue_json(self, q):
        s = self.standin
        item = s.items.get(q.job)
        out = {"_class": "hudson.model.Queue$WaitingItem", "id": q.id, "blocked": False, "buildable": True,
               "params": "".join(f"\n{k}={v}" for k, v in q.params.items()),
               "task": {"_class": JOB_CLASS, "name": q.job.split("/")[-1], "url": s.item_url(q.job)},
               "actions": [{"_class": "hudson.model.ParametersAction",
                            "parameters": [{"name": k, "value": v} for k, v in q.params.items()]}]}
        if q.cancelled:
            out.update({"_class": "hudson.model.Queue$LeftItem", "cancelled": True, "executable": None})
        elif q.build is not None:
            out.update({"_class": "hudson.model.Queue$LeftItem", "cancelled": False,
                        "executable": {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
                                       "number": q.build, "url": s.item_url(q.job) + f"{q.build}/"}})
        else:
            ok, why = s._label_served(item.label() if item else None)
            out["why"] = why if not ok else ("Waiting for next available executor" if not s.hold_queue
                                            else "In the quiet period")
        return out

    def _build_json(self, name, b):
        s = self.standin
        return {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": b.number,
                "url": s.item_url(name) + f"{b.number}/", "result": None if b.building else b.result,
                "building": b.building, "duration": b.duration, "timestamp": int(b.started * 1000),
                "displayName": f"#{b.number}", "fullDisplayName": f"{name.replace('/', ' » ')} #{b.number}",
                "actions": [{"_class": "hudson.model.ParametersAction",
                             "parameters": [{"name": k, "value": v} for k, v in b.params.items()]}],
                "artifacts": []}


def _parse_or_500(text: str):
    try:
        ET.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text))
    except ET.ParseError as exc:
        raise _Response(500, f"java.io.IOException: Unable to read: {exc}")


def _description(config: str) -> str:
    m = re.search(r"<description>(.*?)</description>", config, re.S)
    return unescape_xml(m.group(1)) if m else ""


# ---------------------------------------------------------------- shared by the tests/test_jenkins_*.py files

TOKEN = "standin-token-0123456789"
SCM_URL = "https://git.example.org/fermi-lat/release-manager.git"


def reference_settings(**over):
    """Settings the golden files are rendered with: independent of the environment."""
    from release_manager.config import load_settings
    values = dict(registry="127.0.0.1:5000", namespace="fermi-lat", jenkins_script_mode="inline",
                  jenkins_scm_url="<placeholder: Release Manager git URL>", jenkins_url=None,
                  jenkins_user=None, jenkins_token=None)
    values.update(over)
    return load_settings(**values)


def reference_options():
    from release_manager.jenkins.model import JenkinsOptions
    return JenkinsOptions.model_construct()   # the declared defaults, no RELMAN_JENKINS_* from the environment


def reference_jobset(specs_dir=None, **over):
    from release_manager.config import PROJECT_ROOT
    from release_manager.jenkins.model import build_jobs
    from release_manager.spec import load_specs
    return build_jobs(load_specs(specs_dir or PROJECT_ROOT / "image_specs"), reference_settings(**over),
                      reference_options())
