"""A local stand-in for Slack's Web API: Slack's wire format, its limits, its 429s."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from bot.slack.limits import MESSAGE_TEXT, check_blocks, check_view


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    status: int
    ok: bool


@dataclass
class Fault:
    status: int
    retry_after: int | None
    error: str
    channel: str | None


@dataclass
class Hold:
    """Store a call's effect, then answer only after `seconds` (or never: `drop` closes the connection)."""

    seconds: float
    drop: bool
    channel: str | None
    ts: str | None = None


@dataclass
class FakeSlack:
    """Records every call, keeps posted messages, validates blocks, and answers faults on demand."""

    token: str = "xoxb-test-token-000000000000"
    app_token: str = "xapp-1-test-app-token-000000"  # Socket Mode's apps.connections.open takes this one
    socket_url: str | None = None  # what apps.connections.open hands out
    latency: float = 0.0
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Updates of one message that were in flight at the same time: must stay empty.
    overlaps: list[str] = field(default_factory=list)
    _in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    uploads: dict[str, bytes] = field(default_factory=dict)  # file id -> bytes received
    files: list[dict[str, Any]] = field(default_factory=list)  # completed uploads, as shared
    usergroups: dict[str, list[str]] = field(default_factory=dict)  # user group id -> member ids
    homes: dict[str, dict[str, Any]] = field(default_factory=dict)  # user id -> published Home tab view
    down_until: float = 0.0  # monotonic time until which every call gets 503 (an outage)
    holds: dict[str, list[Hold]] = field(default_factory=lambda: defaultdict(list))
    released: threading.Event = field(default_factory=threading.Event)  # ends every hold at once
    _last_ts: float = 0.0
    # response_urls handed out: hook id -> where the click happened ({"user", "channel", "thread_ts"}).
    hooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    hook_uses: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Conversations deploybot is not a member of (default: a member of every one), and the private ones.
    not_member: set[str] = field(default_factory=set)
    private: set[str] = field(default_factory=set)
    _next_ts: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:  # slack_sdk reads conversations.* with GET and query parameters
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.released.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def fail(
        self,
        method: str,
        times: int = 1,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        error: str = "ratelimited",
        channel: str | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` (to `channel`, if given) with an error: 429 by default."""
        with self.lock:
            self.faults[method] += [Fault(status, retry_after, error, channel)] * times

    def hold(
        self, method: str, seconds: float, *, channel: str | None = None, ts: str | None = None, drop: bool = False
    ) -> None:
        """The next call of `method` (to `channel`, of message `ts`) takes effect, then is answered
        after `seconds`, or, with `drop`, its connection is closed without an answer."""
        with self.lock:
            self.holds[method].append(Hold(seconds, drop, channel, ts))

    def top_level(self, channel: str) -> list[dict[str, Any]]:
        """Messages in a channel that are not thread replies, in posting order."""
        with self.lock:
            found = [m for (ch, ts), m in self.messages.items() if ch == channel and m.get("thread_ts") in (None, ts)]
        return sorted(found, key=lambda m: float(m["ts"]))

    def outage(self, seconds: float) -> None:
        """Answer every call with 503 for the next `seconds`."""
        self.down_until = time.monotonic() + seconds

    def calls_of(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method and c.ok]

    def response_url(self, user: str, channel: str, thread_ts: str | None = None) -> str:
        """A response_url for one request, as Slack puts in a payload: it answers that person, there."""
        with self.lock:
            self._next_ts += 1
            hook = f"H{self._next_ts:08d}"
            self.hooks[hook] = {"user": user, "channel": channel, "thread_ts": thread_ts}
        return f"{self.url.removesuffix('/api/')}/hooks/{hook}"

    def answered(self) -> list[dict[str, Any]]:
        """What people were told through response_urls, in order, with who and where."""
        return [c.args for c in self.calls_of("response_url")]

    def posted_to(self, channel: str) -> list[dict[str, Any]]:
        """Messages posted to a channel or user (a DM, addressed by user or IM channel id), in order."""
        where = self.conversation(channel)
        return [c.args for c in self.calls_of("chat.postMessage") if self.conversation(c.args.get("channel")) == where]

    @staticmethod
    def im(user: str) -> str:
        """The id of deploybot's direct message channel with `user`, as conversations.open hands it out."""
        return "D" + user.removeprefix("U").removeprefix("W")

    def conversation(self, channel: Any) -> Any:
        """Where a message to `channel` goes: a user id stands for the IM channel with that user, as on Slack."""
        is_user = isinstance(channel, str) and channel[:1] in ("U", "W")
        return self.im(channel) if is_user else channel

    def _aimed(self, channel: str | None, where: Any) -> bool:
        """A fault or hold for `channel` (any, if None) meets a call to `where`."""
        return channel is None or self.conversation(channel) == where

    def thread(self, channel: str, parent_ts: str) -> list[dict[str, Any]]:
        """The parent message and its replies, in posting order."""
        with self.lock:
            found = [
                m
                for (ch, ts), m in self.messages.items()
                if ch == channel and (ts == parent_ts or m.get("thread_ts") == parent_ts)
            ]
        return sorted(found, key=lambda m: float(m["ts"]))

    # --- the wire ----------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path, _, query = request.path.partition("?")
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        if path.startswith("/upload/"):  # the URL files.getUploadURLExternal handed out
            with self.lock:
                self.uploads[path.rsplit("/", 1)[-1]] = body
            request.send_response(200)
            request.send_header("Content-Length", "2")
            request.end_headers()
            request.wfile.write(b"OK")
            return
        if path.startswith("/hooks/"):
            self._hook(request, path.rsplit("/", 1)[-1], body)
            return
        method = path.rsplit("/", 1)[-1]
        raw = body.decode()
        if (request.headers.get("Content-Type") or "").startswith("application/json"):
            args = {**dict(parse_qsl(query)), **(json.loads(raw) if raw else {})}
        else:
            args = dict(parse_qsl(query)) | dict(parse_qsl(raw, keep_blank_values=True))
            for key in ("blocks", "view", "attachments"):
                if isinstance(args.get(key), str):
                    args[key] = json.loads(args[key])
        key = f"{args.get('channel')}/{args.get('ts')}" if method == "chat.update" else ""
        with self.lock:
            self._in_flight[key] += 1
            if key and self._in_flight[key] > 1:
                self.overlaps.append(key)
        try:
            if self.latency:
                time.sleep(self.latency)
            self._answer(request, method, args)
        finally:
            with self.lock:
                self._in_flight[key] -= 1

    def _answer(self, request: BaseHTTPRequestHandler, method: str, args: dict[str, Any]) -> None:
        at = time.monotonic()
        with self.lock:
            queue = self.faults.get(method) or []
            where = self.conversation(args.get("channel"))
            fault = next((f for f in queue if self._aimed(f.channel, where)), None)
            if fault:
                queue.remove(fault)
        headers: dict[str, str] = {}
        if at < self.down_until:
            fault = Fault(503, None, "service_unavailable", None)
        hold = None
        if fault:
            status, body = fault.status, {"ok": False, "error": fault.error}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
        elif request.headers.get("Authorization") != f"Bearer {self._token_for(method)}":
            status, body = 200, {"ok": False, "error": "invalid_auth"}
        else:
            answer = getattr(self, "_" + method.replace(".", "_"), None)
            status, body = 200, answer(args) if answer else {"ok": False, "error": "unknown_method"}
            with self.lock:
                waiting = self.holds.get(method) or []
                hold = next(
                    (h for h in waiting if self._aimed(h.channel, where) and h.ts in (None, args.get("ts"))),
                    None,
                )
                if hold:
                    waiting.remove(hold)
        with self.lock:
            self.calls.append(Call(method, args, at, status, bool(body.get("ok"))))
        if hold and hold.drop:
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)  # done in Slack, never answered
            return
        if hold:
            self.released.wait(hold.seconds)
        try:
            self._reply(request, status, body, headers)
        except OSError:  # the caller gave up (timed out, or was killed) while the answer was held
            request.close_connection = True

    def _reply(
        self, request: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(data)

    def _hook(self, request: BaseHTTPRequestHandler, hook: str, body: bytes) -> None:
        """A POST to a response_url: JSON in, "ok" out; 404 once expired or used 5 times; faults as "response_url"."""
        at = time.monotonic()
        with self.lock:
            queue = self.faults.get("response_url") or []
            fault = queue.pop(0) if queue else None
            where = self.hooks.get(hook)
            if where is not None and fault is None and at >= self.down_until:
                self.hook_uses[hook] += 1
            uses = self.hook_uses[hook]
        if at < self.down_until:
            fault = Fault(503, None, "service_unavailable", None)
        args = json.loads(body or b"{}")
        if fault:
            status, text = fault.status, fault.error
        elif where is None:
            status, text = 404, "expired_url"
        elif uses > 5:
            status, text = 404, "used_url"
        elif args.get("response_type") not in (None, "ephemeral", "in_channel") or (
            not args.get("text") and not args.get("blocks")
        ):
            status, text = 400, "no_text"
        else:
            status, text = 200, "ok"
        with self.lock:
            self.calls.append(Call("response_url", {**args, **(where or {})}, at, status, status == 200))
        data = text.encode()
        request.send_response(status)
        request.send_header("Content-Type", "text/html")
        request.send_header("Content-Length", str(len(data)))
        if fault and fault.retry_after is not None:
            request.send_header("Retry-After", str(fault.retry_after))
        request.end_headers()
        request.wfile.write(data)

    def _token_for(self, method: str) -> str:
        return self.app_token if method == "apps.connections.open" else self.token

    # --- methods -----------------------------------------------------------------------------------

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.socket_url is None:
            return {"ok": False, "error": "not_allowed_token_type"}
        return {"ok": True, "url": self.socket_url}

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://example.slack.com/",
            "team": "Example",
            "user": "deploybot",
            "team_id": "T111",
            "user_id": "UBOT",
            "bot_id": "BBOT",
        }

    def _invalid(self, args: dict[str, Any]) -> dict[str, Any] | None:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        if len(args.get("text") or "") > MESSAGE_TEXT:
            return {"ok": False, "error": "msg_too_long"}
        errors = check_blocks(args.get("blocks") or [])
        if errors:
            return {"ok": False, "error": "invalid_blocks", "errors": errors}
        return None

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        if problem := self._invalid(args):
            return problem
        metadata = args.get("metadata")
        channel = self.conversation(args["channel"])  # Slack answers a post to a user with the IM channel
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        with self.lock:
            # Like Slack's: the posting time in seconds since the epoch, unique within the channel.
            self._last_ts = max(round(time.time(), 6), self._last_ts + 0.000001)
            ts = f"{self._last_ts:.6f}"
            message = {
                "ts": ts,
                "channel": channel,
                "text": args.get("text"),
                "blocks": args.get("blocks") or [],
                "thread_ts": args.get("thread_ts"),
            }
            if metadata:
                message["metadata"] = metadata
            self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _listed(self, messages: list[dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
        """A page of messages the way conversations.history and .replies hand them out."""
        everything = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = [
            {"type": "message", "bot_id": "BBOT", **{k: v for k, v in m.items() if k != "metadata" or everything}}
            for m in messages
        ]
        start = int(base64.b64decode(args["cursor"]).decode().removeprefix("offset:")) if args.get("cursor") else 0
        limit = int(args.get("limit") or 100)
        page, more = shown[start : start + limit], start + limit < len(shown)
        cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode() if more else ""
        return {"ok": True, "messages": page, "has_more": more, "response_metadata": {"next_cursor": cursor}}

    def _within(self, message: dict[str, Any], args: dict[str, Any]) -> bool:
        ts, inclusive = float(message["ts"]), str(args.get("inclusive", "")).lower() in ("1", "true")
        oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or "inf")
        return (oldest <= ts <= latest) if inclusive else (oldest < ts < latest)

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        found = [m for m in self.top_level(args["channel"]) if self._within(m, args)]
        return self._listed(found[::-1], args)  # newest first

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, parent_ts = args.get("channel", ""), args.get("ts", "")
        if (channel, parent_ts) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        parent, *replies = self.thread(channel, parent_ts)
        return self._listed([parent, *(m for m in replies if self._within(m, args))], args)  # oldest first

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        if problem := self._invalid(args):
            return problem
        with self.lock:
            message = self.messages.get((args["channel"], args.get("ts", "")))
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.update(text=args.get("text"), blocks=args.get("blocks") or [])
        return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args.get("text")}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel") in self.not_member:  # chat:write.public does not cover ephemeral messages
            return {"ok": False, "error": "not_in_channel"}
        if not args.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        if problem := self._invalid(args):
            return problem
        return {"ok": True, "message_ts": "1700000000.999999"}

    def _files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        with self.lock:
            self._next_ts += 1
            file_id = f"F{self._next_ts:08d}"
        return {"ok": True, "upload_url": f"{self.url.removesuffix('/api/')}/upload/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = json.loads(args["files"]) if isinstance(args.get("files"), str) else args.get("files") or []
        if args.get("channel_id") in self.not_member:
            return {"ok": False, "error": "not_in_channel"}
        with self.lock:
            if not files or any(f["id"] not in self.uploads for f in files):
                return {"ok": False, "error": "file_not_found"}
            for f in files:
                self.files.append(
                    {
                        **f,
                        "content": self.uploads[f["id"]],
                        "channel_id": args.get("channel_id"),
                        "thread_ts": args.get("thread_ts"),
                        "initial_comment": args.get("initial_comment"),
                    }
                )
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        members = self.usergroups.get(args.get("usergroup", ""))
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": members}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view") or {}
        if not args.get("user_id") or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        errors = check_view(view)
        if errors:
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": errors}}
        with self.lock:
            self.homes[args["user_id"]] = view
        return {"ok": True, "view": {**view, "id": "VHOME"}}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = args.get("view") or {}
        errors = check_view(view)
        if errors:
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": errors}}
        return {"ok": True, "view": {**view, "id": "V111", "state": {"values": {}}}}

    def _conversations_join(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel", "")
        if channel in self.private:
            return {"ok": False, "error": "method_not_supported_for_channel_type"}
        with self.lock:
            self.not_member.discard(channel)
        return {"ok": True, "channel": {"id": channel, "is_private": False}}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args.get("users") or "")
        if not users or "," in users:
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "channel": {"id": self.im(users)}}
